"""Tests of LocalProvider: asyncio bridging, timeouts and the batching front, on the real tiny model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmrouter.dispatch.dispatcher import Dispatcher
from llmrouter.dispatch.attempts import ChainEntry
from llmrouter.errors import ContextTooLong, Overloaded, ProviderTimeout, ProviderUnavailable
from llmrouter.core.retry import RetryPolicy
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationRequest, LocalModel
from llmrouter.providers.base import Capabilities, Deadline, Generation, Health, LLMProvider, Prompt, StreamDelta
from llmrouter.providers.local import LocalProvider

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the provider serves on the loop it was started on

PROMPT = Prompt(text="The router reads a request from kafka and", max_tokens=24)


class RecordingModel(LocalModel):
    """A LocalModel that records its forward calls, its batches (sizes and prompts), and the threads they ran on."""

    def __init__(self, config: LocalModelConfig) -> None:
        super().__init__(config)
        self.forward_calls = 0
        self.batch_sizes: list[int] = []
        self.batch_prompts: list[list[str]] = []
        self.threads_used: set[int] = set()

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.forward_calls += 1
        self.threads_used.add(threading.get_ident())
        return super().forward(*args, **kwargs)

    def run_batch(self, requests, **kwargs):  # type: ignore[no-untyped-def]
        self.batch_sizes.append(len(requests))
        self.batch_prompts.append([r.prompt for r in requests])
        return super().run_batch(requests, **kwargs)


def config_for(model_dir: Path, **overrides: object) -> LocalModelConfig:
    """A config for the tiny fp32 model with a 512-token context."""
    values: dict[str, object] = {"model_path": model_dir, "quantization": "none", "context_tokens": 512}
    values.update(overrides)
    return LocalModelConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def provider(tiny_model_dir: Path) -> AsyncIterator[LocalProvider]:
    """A started provider (batch 1) around a RecordingModel."""
    provider = LocalProvider(config_for(tiny_model_dir), model_factory=RecordingModel)
    await provider.start()
    yield provider
    await provider.stop()


def recorder(provider: LocalProvider) -> RecordingModel:
    """The provider's model, as the RecordingModel the fixture made."""
    model = provider._model
    assert isinstance(model, RecordingModel)
    return model


async def test_generate_matches_the_engine_and_runs_off_the_event_loop_thread(provider: LocalProvider) -> None:
    """generate() returns the engine's greedy answer with usage, computed on a worker thread."""
    generation = await provider.generate(PROMPT)
    expected = recorder(provider).generate(GenerationRequest(prompt=PROMPT.as_text(), max_tokens=24))
    assert generation.text == expected.text
    assert (generation.prompt_tokens, generation.completion_tokens) == (expected.prompt_tokens, 24)
    assert generation.finish_reason == "length"
    assert generation.model == "tiny-llama"
    recorder(provider).threads_used.clear()  # the direct engine call above ran on this thread
    await provider.generate(PROMPT)
    assert recorder(provider).threads_used and threading.get_ident() not in recorder(provider).threads_used


async def test_stream_deltas_join_to_the_generate_text_and_end_with_the_generation(provider: LocalProvider) -> None:
    """stream() yields text deltas whose join equals generate()'s text; only the last carries final."""
    deltas = [delta async for delta in provider.stream(PROMPT)]
    generation = await provider.generate(PROMPT)
    assert "".join(d.delta for d in deltas) == generation.text
    assert deltas[-1].final == generation
    assert all(d.final is None for d in deltas[:-1])


async def test_event_loop_keeps_running_during_generation(provider: LocalProvider) -> None:
    """A concurrent asyncio ticker keeps ticking while a long generation runs."""
    ticks = 0
    generation_task = asyncio.ensure_future(provider.generate(Prompt(text="hello", max_tokens=300)))

    async def ticker() -> None:
        nonlocal ticks
        while not generation_task.done():
            ticks += 1
            await asyncio.sleep(0)

    await asyncio.gather(generation_task, ticker())
    assert generation_task.result().completion_tokens >= 100
    assert ticks >= 20


class GatedModel(RecordingModel):
    """A RecordingModel whose third forward call waits until the test opens the gate."""

    def __init__(self, config: LocalModelConfig) -> None:
        super().__init__(config)
        self.gate = threading.Event()
        self.gate_at_call = 3

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.forward_calls + 1 == self.gate_at_call:
            self.gate.wait(timeout=30)
        return super().forward(*args, **kwargs)


async def _worker_idle(provider: LocalProvider) -> None:
    """Wait until the provider's worker thread has finished what it was running."""
    assert provider._pool is not None
    await asyncio.get_running_loop().run_in_executor(provider._pool, lambda: None)


@pytest.mark.parametrize("streaming", [False, True])
async def test_timeout_raises_provider_timeout_and_stops_the_generation(tiny_model_dir: Path, streaming: bool) -> None:
    """A generation still running at timeout_s raises ProviderTimeout, and the worker stops at its next step."""
    provider = LocalProvider(config_for(tiny_model_dir, timeout_s=0.05), model_factory=GatedModel)
    await provider.start()
    model = provider._model
    assert isinstance(model, GatedModel)
    prompt = Prompt(text="hello", max_tokens=400)
    try:
        with pytest.raises(ProviderTimeout) as info:
            if streaming:
                async for _ in provider.stream(prompt):
                    pass
            else:
                await provider.generate(prompt)
        assert info.value.retriable
        model.gate.set()  # the stuck step finishes; the cancel flag must end the loop there
        await _worker_idle(provider)
        assert model.forward_calls == model.gate_at_call
    finally:
        await provider.stop()


async def test_batching_front_runs_concurrent_requests_together_with_unbatched_results(tiny_model_dir: Path) -> None:
    """With batch_size 4, requests arriving while the model is busy run as one batch and equal their lone answers."""
    provider = LocalProvider(config_for(tiny_model_dir, batch_size=4), model_factory=RecordingModel)
    await provider.start()
    try:
        prompts = [Prompt(text=f"request number {i} about kafka", max_tokens=10 + i) for i in range(5)]
        generations = await asyncio.gather(*(provider.generate(p) for p in prompts))
        model = recorder(provider)
        alone = [model.generate(GenerationRequest(prompt=p.as_text(), max_tokens=p.max_tokens)) for p in prompts]
        assert [g.text for g in generations] == [r.text for r in alone]
        assert [g.completion_tokens for g in generations] == [10, 11, 12, 13, 14]
        assert max(model.batch_sizes) > 1 and sum(model.batch_sizes) == 5
        assert provider.get_capabilities().batching
    finally:
        await provider.stop()


async def test_prompt_over_the_context_raises_context_too_long(tiny_model_dir: Path) -> None:
    """A prompt longer than the context window raises ContextTooLong (not retriable), batched, alone or streamed."""
    for batch_size in (1, 2):
        provider = LocalProvider(config_for(tiny_model_dir, context_tokens=8, batch_size=batch_size))
        await provider.start()
        try:
            with pytest.raises(ContextTooLong) as info:
                await provider.generate(PROMPT)
            assert not info.value.retriable
            with pytest.raises(ContextTooLong):
                async for _ in provider.stream(PROMPT):
                    pass
        finally:
            await provider.stop()


async def test_health_capabilities_cost_and_token_count(provider: LocalProvider, tiny_model_dir: Path) -> None:
    """Health runs a 1-token generation; capabilities describe the local model; cost is 0; tokens are real."""
    health = await provider.health_check()
    assert health.healthy and health.latency_s > 0
    capabilities = provider.get_capabilities()
    assert capabilities.models == ("tiny-llama",)
    assert (capabilities.context_tokens, capabilities.local, capabilities.streaming) == (512, True, True)
    assert not capabilities.batching
    assert provider.estimate_cost(1000, 1000) == 0.0
    assert provider.count_tokens("hello world") == recorder(provider).count_tokens("hello world")


async def test_unstarted_provider_is_unhealthy_and_refuses_work(tiny_model_dir: Path) -> None:
    """Before start() the provider reports unhealthy and generate raises ProviderUnavailable."""
    provider = LocalProvider(config_for(tiny_model_dir))
    assert not (await provider.health_check()).healthy
    with pytest.raises(ProviderUnavailable):
        await provider.generate(PROMPT)


# -- dynamic batching, overflow, priorities ------------------------------------------------------

class HeldModel(RecordingModel):
    """A RecordingModel whose forward calls wait while the test holds it (``released`` cleared)."""

    def __init__(self, config: LocalModelConfig) -> None:
        super().__init__(config)
        self.released = threading.Event()
        self.released.set()
        self.entered = threading.Event()

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.released.wait(timeout=30)
        return super().forward(*args, **kwargs)


async def started(model_dir: Path, factory: type[LocalModel] = HeldModel, **overrides: object) -> LocalProvider:
    provider = LocalProvider(config_for(model_dir, **overrides), model_factory=factory)
    await provider.start()
    return provider


async def hold_with_a_running_batch(provider: LocalProvider, prompt: Prompt) -> asyncio.Task[Generation]:
    """Hold the model, start ``prompt`` and return once its batch is inside the model."""
    model = provider._model
    assert isinstance(model, HeldModel)
    model.released.clear()
    model.entered.clear()
    task = asyncio.ensure_future(provider.generate(prompt))
    assert await asyncio.to_thread(model.entered.wait, 10), "the first batch never reached the model"
    return task


async def until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` on the event loop until it holds; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def test_a_full_queue_refuses_at_once_with_overloaded(tiny_model_dir: Path) -> None:
    """max_queue 1: with a batch running and one request queued, the next is refused at once (code
    overloaded, not retriable, another provider may help); the others are still answered."""
    provider = await started(tiny_model_dir, max_queue=1)
    try:
        running = await hold_with_a_running_batch(provider, Prompt(text="first", max_tokens=4))
        queued = asyncio.ensure_future(provider.generate(Prompt(text="second", max_tokens=4)))
        await until(lambda: provider.batch_stats()["queued"] == 1)
        with pytest.raises(Overloaded) as info:
            await provider.generate(Prompt(text="third", max_tokens=4))
        assert info.value.code == "overloaded"
        assert not info.value.retriable and info.value.next_provider_may_help
        assert "queue is full (1 waiting, max_queue 1)" in str(info.value)
        recorder(provider).released.set()
        assert [g.completion_tokens for g in await asyncio.gather(running, queued)] == [4, 4]
        assert provider.batch_stats()["refused"] == {"queue_full": 1}
    finally:
        await provider.stop()


async def test_a_request_whose_deadline_cannot_be_met_behind_the_queue_is_refused(tiny_model_dir: Path) -> None:
    """Once batch costs are measured, a request whose deadline falls before the work queued ahead of it can
    end is refused at once instead of waiting to time out."""
    provider = await started(tiny_model_dir)
    try:
        await provider.generate(Prompt(text="warm up", max_tokens=8))  # the policy learns the cost
        running = await hold_with_a_running_batch(provider, Prompt(text="first", max_tokens=8))
        queued = asyncio.ensure_future(provider.generate(Prompt(text="second", max_tokens=8)))
        await until(lambda: provider.batch_stats()["queued"] == 1)
        hurried = Prompt(text="third", max_tokens=8, deadline=Deadline(1e-6, clock=lambda: 0.0))  # 1 µs left
        with pytest.raises(Overloaded, match="cannot answer in time"):
            await provider.generate(hurried)
        recorder(provider).released.set()
        await asyncio.gather(running, queued)
        assert provider.batch_stats()["refused"] == {"deadline": 1}
    finally:
        await provider.stop()


async def test_more_urgent_requests_run_first(tiny_model_dir: Path) -> None:
    """Queued behind a running batch, a critical request runs before the normal and low ones queued earlier."""
    provider = await started(tiny_model_dir)
    try:
        running = await hold_with_a_running_batch(provider, Prompt(text="running", max_tokens=2))
        waiting = [asyncio.ensure_future(provider.generate(Prompt(text=name, max_tokens=2, priority=priority)))
                   for name, priority in (("low", 3), ("normal", 2), ("critical", 0))]
        await until(lambda: provider.batch_stats()["queued"] == 3)
        recorder(provider).released.set()
        await asyncio.gather(running, *waiting)
        assert recorder(provider).batch_prompts == [["running"], ["critical"], ["normal"], ["low"]]
    finally:
        await provider.stop()


async def test_latency_mode_runs_at_once_and_throughput_mode_waits_for_a_full_batch(tiny_model_dir: Path) -> None:
    """One request, then three more: latency mode has run the first alone by then; throughput mode (max
    wait 30 s) holds it until the batch of four is full."""
    provider = await started(tiny_model_dir, RecordingModel, batch_size=4, batching="latency")
    try:
        first = asyncio.ensure_future(provider.generate(Prompt(text="first", max_tokens=3)))
        await until(lambda: provider.batch_stats()["running"] + provider.batch_stats()["rows"] == 1)
        await asyncio.gather(first, *(provider.generate(Prompt(text=f"more {i}", max_tokens=3)) for i in range(3)))
        assert recorder(provider).batch_sizes == [1, 3]
        assert provider.batch_stats()["reasons"] == {"latency": 2}
    finally:
        await provider.stop()

    provider = await started(tiny_model_dir, RecordingModel, batch_size=4, batching="throughput",
                             max_batch_wait_s=30.0)
    try:
        first = asyncio.ensure_future(provider.generate(Prompt(text="first", max_tokens=3)))
        await until(lambda: provider.batch_stats()["holding"] == 1)  # a worker waits for the batch to fill
        await asyncio.gather(first, *(provider.generate(Prompt(text=f"more {i}", max_tokens=3)) for i in range(3)))
        assert recorder(provider).batch_sizes == [4]
        assert provider.batch_stats()["reasons"] == {"full": 1}
    finally:
        await provider.stop()


async def test_streams_are_rows_of_a_batch_and_each_gets_its_own_text(tiny_model_dir: Path) -> None:
    """Three streams and one plain call arriving together run as one batch of four; each stream's deltas
    join to exactly the text it would get alone, and only its last delta carries the generation."""
    provider = await started(tiny_model_dir, RecordingModel, batch_size=4, batching="throughput",
                             max_batch_wait_s=30.0)
    prompts = [Prompt(text=f"stream number {i} about kafka", max_tokens=12 + 3 * i) for i in range(4)]

    async def collect(prompt: Prompt) -> list[StreamDelta]:
        return [delta async for delta in provider.stream(prompt)]

    try:
        *streams, plain = await asyncio.gather(*(collect(p) for p in prompts[:3]), provider.generate(prompts[3]))
        model = recorder(provider)
        alone = [model.generate(GenerationRequest(prompt=p.as_text(), max_tokens=p.max_tokens)) for p in prompts]
        assert model.batch_sizes == [4]
        for deltas, expected in zip(streams, alone):
            assert "".join(d.delta for d in deltas) == expected.text
            assert deltas[-1].final is not None and deltas[-1].final.completion_tokens == expected.completion_tokens
            assert all(d.final is None for d in deltas[:-1])
        assert plain.text == alone[3].text
        assert provider.batch_stats()["last"]["streams"] == 3
    finally:
        await provider.stop()


async def test_a_request_that_times_out_in_the_queue_never_runs(tiny_model_dir: Path) -> None:
    """A request queued behind a held batch times out with ProviderTimeout and is dropped, not run later."""
    provider = await started(tiny_model_dir, timeout_s=0.2)
    try:
        running = await hold_with_a_running_batch(provider, Prompt(text="running", max_tokens=2))
        with pytest.raises(ProviderTimeout):
            await provider.generate(Prompt(text="too late", max_tokens=2))
        with pytest.raises(ProviderTimeout):
            await running  # held past its own timeout too
        recorder(provider).released.set()
        await until(lambda: provider.batch_stats()["running"] == 0 and provider.batch_stats()["queued"] == 0)
        await provider.generate(Prompt(text="after", max_tokens=2))
        assert ["too late"] not in recorder(provider).batch_prompts
    finally:
        await provider.stop()


async def test_batch_stats_show_sizes_reasons_and_learned_costs(tiny_model_dir: Path) -> None:
    """After a batch of three and one of one: sizes, rows, tokens and the learned per-step costs are reported."""
    provider = await started(tiny_model_dir, RecordingModel, batch_size=4, batching="latency")
    try:
        await asyncio.gather(*(provider.generate(Prompt(text=f"p{i}", max_tokens=5)) for i in range(3)))
        await provider.generate(Prompt(text="alone", max_tokens=5))
        stats = provider.batch_stats()
        assert (stats["mode"], stats["max_batch"], stats["max_wait_ms"]) == ("latency", 4, 0.0)
        assert stats["sizes"] == {"1": 1, "3": 1} and stats["rows"] == 4 and stats["largest"] == 3
        assert stats["tokens"] == 20 and stats["batches"] == 2
        assert stats["learned"]["prefill_ms_per_token"] > 0
        assert set(stats["learned"]["step_ms_by_rows"]) == {"1", "2", "3", "4"}
        assert stats["last"]["size"] == 1 and stats["last"]["decode_steps"] == 4
    finally:
        await provider.stop()


class Standby(LLMProvider):
    """Stands in for the next provider of the chain (a cloud API) at the provider interface."""

    name = "standby"

    def __init__(self) -> None:
        self.calls = 0

    async def generate(self, prompt: Prompt) -> Generation:
        self.calls += 1
        return Generation(text="from the standby", model="standby-m", prompt_tokens=1, completion_tokens=3)

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        yield StreamDelta(delta="", final=await self.generate(prompt))

    async def health_check(self) -> Health:
        return Health(healthy=True)

    def get_capabilities(self) -> Capabilities:
        return Capabilities(models=("standby-m",), context_tokens=2048)

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return 0.0


async def test_the_dispatcher_moves_an_overflowing_request_on_without_retrying_the_local_model(
        tiny_model_dir: Path) -> None:
    """Through the dispatcher: the local model's full queue sends the request to the next provider at once,
    even with retries allowed on local, and the attempt says overloaded."""
    provider = await started(tiny_model_dir, max_queue=0)
    standby = Standby()
    chain = {"local": ChainEntry(provider, timeout_s=10, retry=RetryPolicy(attempts=3)), "standby": ChainEntry(standby)}
    try:
        running = await hold_with_a_running_batch(provider, Prompt(text="running", max_tokens=2))
        outcome = await Dispatcher(chain).dispatch(Prompt(text="overflow", max_tokens=2), ["local", "standby"],
                                                   time_left_s=10)
        assert outcome.provider == "standby" and standby.calls == 1
        assert [(a.provider, a.outcome, a.error_code) for a in outcome.attempts] == [
            ("local", "error", "overloaded"), ("standby", "ok", None)]
        recorder(provider).released.set()
        await running
    finally:
        await provider.stop()


async def test_the_dispatcher_gives_the_local_model_the_request_deadline(tiny_model_dir: Path) -> None:
    """The dispatcher puts the request's deadline on the prompt, so a request with too little time left for
    the queue ahead is refused by the local model and served by the next provider well before its deadline.
    The dispatcher's clock stands still, so the local model is given exactly the time left the request had: the
    same clock object carries the deadline from the dispatcher to the provider, and no margin is needed."""
    provider = await started(tiny_model_dir)
    standby = Standby()
    chain = {"local": ChainEntry(provider, timeout_s=10), "standby": ChainEntry(standby)}
    try:
        await provider.generate(Prompt(text="warm up", max_tokens=8))
        running = await hold_with_a_running_batch(provider, Prompt(text="running", max_tokens=8))
        queued = asyncio.ensure_future(provider.generate(Prompt(text="queued", max_tokens=8)))
        await until(lambda: provider.batch_stats()["queued"] == 1)
        still = lambda: 100.0  # noqa: E731  the router's clock, stopped: 1 ms left, less than one batch (~5 ms)
        outcome = await Dispatcher(chain, clock=still).dispatch(Prompt(text="hurried", max_tokens=8),
                                                                ["local", "standby"], deadline_s=100.001)
        assert outcome.attempts[0].error_code == "overloaded" and "cannot answer in time" in outcome.attempts[0].error
        recorder(provider).released.set()
        await asyncio.gather(running, queued)
    finally:
        await provider.stop()
