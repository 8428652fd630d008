"""Tests of LocalProvider: asyncio bridging, timeouts and the batching front, on the real tiny model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmrouter.errors import ContextTooLong, ProviderTimeout, ProviderUnavailable
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationRequest, LocalModel
from llmrouter.providers.base import Prompt
from llmrouter.providers.local import LocalProvider

PROMPT = Prompt(text="The router reads a request from kafka and", max_tokens=24)


class RecordingModel(LocalModel):
    """A LocalModel that records its forward calls and batch sizes, and the threads they ran on."""

    def __init__(self, config: LocalModelConfig) -> None:
        super().__init__(config)
        self.forward_calls = 0
        self.batch_sizes: list[int] = []
        self.threads_used: set[int] = set()

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.forward_calls += 1
        self.threads_used.add(threading.get_ident())
        return super().forward(*args, **kwargs)

    def generate_batch(self, requests, **kwargs):  # type: ignore[no-untyped-def]
        self.batch_sizes.append(len(requests))
        return super().generate_batch(requests, **kwargs)


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
