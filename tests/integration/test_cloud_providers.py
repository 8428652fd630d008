"""The cloud provider clients against the provider simulator, which speaks each vendor's real wire format.

Every test runs for every cloud kind (openai, together, openai_compatible,
huggingface, anthropic). Faults are scripted through the simulator's
control API (``/_sim/script``), so each test says exactly which outcome the
next request takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from llmrouter.errors import (AuthError, BadRequest, ConfigError, ContextTooLong, MalformedReply, ProviderError,
                              ProviderTimeout, ProviderUnavailable, RateLimited)
from llmrouter.providers.base import Generation, Prompt, StreamDelta
from llmrouter.providers.cloud import build_cloud_provider
from llmrouter.providers.http import HttpProvider
from llmrouter.providers.spec import ProviderSpec
from llmrouter.simulator import SimProfile, Simulator
from llmrouter.testing.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

KINDS = ("openai", "together", "openai_compatible", "huggingface", "anthropic")
FLAVOR = {"openai": "openai", "together": "openai", "openai_compatible": "openai", "huggingface": "huggingface",
          "anthropic": "anthropic"}
SECRET = "sk-sim-SECRET-0123456789abcdef"
PROMPT = Prompt(messages=(("system", "Answer briefly."), ("user", "how does the router pick a provider")),
                max_tokens=8)
PROMPT_WORDS = 2 + 7  # what the simulator counts as prompt tokens (words of every message)
PRICES = {"price_input_per_1k_usd": 0.5, "price_output_per_1k_usd": 1.5}
POOL_SIZE = 2


def endpoint(kind: str, base: str) -> str:
    """The base URL a provider of ``kind`` is configured with (OpenAI-style ones end in /v1)."""
    return f"{base}/v1" if FLAVOR[kind] == "openai" else base


def spec_for(kind: str, base: str, **overrides: Any) -> ProviderSpec:
    """A spec of ``kind`` pointing at ``base``, with a small pool and known prices."""
    values: dict[str, Any] = {"name": f"sim-{kind.replace('_', '-')}", "kind": kind, "endpoint": endpoint(kind, base),
                              "models": ("sim-model",), "timeout_s": 5.0, "max_concurrent": POOL_SIZE,
                              "capabilities": ("chat",), **PRICES}
    values.update(overrides)
    return ProviderSpec(**values)


@asynccontextmanager
async def started(spec: ProviderSpec, api_key: str | None = None) -> AsyncIterator[HttpProvider]:
    """A started client for ``spec``, stopped on exit."""
    provider = build_cloud_provider(spec, api_key)
    assert isinstance(provider, HttpProvider)
    await provider.start()
    try:
        yield provider
    finally:
        await provider.stop()


class Control:
    """The simulator's control API (``/_sim/...``)."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self._session = base, session

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self._session.request(method, f"{self.base}/_sim/{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def script(self, kind: str, *outcomes: str) -> None:
        await self.call("POST", "script", {"outcomes": list(outcomes), "flavor": FLAVOR[kind]})

    async def stats(self) -> dict[str, Any]:
        return dict(await self.call("GET", "stats"))

    @asynccontextmanager
    async def profile(self, **values: Any) -> AsyncIterator[None]:
        """The simulator runs with ``values`` inside the block, and with its former profile after it."""
        before = await self.call("GET", "profile")
        await self.call("PUT", "profile", values)
        try:
            yield
        finally:
            await self.call("PUT", "profile", {key: before[key] for key in values})


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim() -> AsyncIterator[Control]:
    """One simulator for the module: fast replies, hung requests hang 5 s; controlled over HTTP."""
    simulator = Simulator(profile=SimProfile(latency_ms=1.0, token_delay_ms=0.0, hang_s=5.0))
    base = await simulator.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        yield Control(base, session)
    await simulator.stop()


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def fresh(sim: Control) -> None:
    """Each test starts with zeroed stats and no scripted outcomes."""
    await sim.call("POST", "reset")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each cloud kind in turn."""
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="session")
async def provider(kind: str, sim: Control) -> AsyncIterator[HttpProvider]:
    """A started client of ``kind`` against the simulator, without an API key."""
    async with started(spec_for(kind, sim.base)) as client:
        yield client


async def collect(provider: HttpProvider, prompt: Prompt = PROMPT) -> list[StreamDelta]:
    """Every delta of a streamed answer."""
    return [delta async for delta in provider.stream(prompt)]


async def call(provider: HttpProvider, mode: str) -> Generation:
    """``generate`` or the final generation of ``stream``, by ``mode``."""
    if mode == "generate":
        return await provider.generate(PROMPT)
    deltas = await collect(provider)
    assert deltas[-1].final is not None
    return deltas[-1].final


def expected_prompt_tokens(provider: HttpProvider) -> int:
    """The simulator's count, except for Hugging Face, which reports none: there the client's estimate."""
    if provider.spec.kind == "huggingface":
        return provider.count_tokens(PROMPT.as_text())
    return PROMPT_WORDS


# -- success ------------------------------------------------------------------------------------------------


async def test_generate_returns_text_model_usage_finish_reason_and_cost(provider: HttpProvider) -> None:
    """A plain call gives max_tokens words, the model, the usage, finish 'length' and the cost at the spec's prices."""
    generation = await provider.generate(PROMPT)
    assert len(generation.text.split()) == 8
    assert generation.model == "sim-model"
    assert (generation.prompt_tokens, generation.completion_tokens) == (expected_prompt_tokens(provider), 8)
    assert generation.finish_reason == "length"
    expected_cost = (generation.prompt_tokens * 0.5 + 8 * 1.5) / 1000
    assert provider.estimate_cost(generation.prompt_tokens, 8) == pytest.approx(expected_cost)


async def test_a_reply_shorter_than_max_tokens_finishes_with_stop(provider: HttpProvider, sim: Control) -> None:
    """When the model stops on its own (the simulator's reply_words), finish_reason is 'stop', plain or streamed."""
    async with sim.profile(reply_words=3):
        generation = await provider.generate(PROMPT)
        streamed = await call(provider, "stream")
    assert (generation.finish_reason, generation.completion_tokens) == ("stop", 3)
    assert (streamed.finish_reason, streamed.completion_tokens) == ("stop", 3)


async def test_stream_yields_deltas_in_order_then_the_final_generation(provider: HttpProvider) -> None:
    """Deltas join to the same text a plain call gives; only the last delta, empty, carries the Generation."""
    deltas = await collect(provider)
    plain = await provider.generate(PROMPT)
    *pieces, last = deltas
    assert len(pieces) == 8 and all(d.delta and d.final is None for d in pieces)
    assert last.delta == "" and last.final is not None
    assert "".join(d.delta for d in pieces) == last.final.text == plain.text
    assert last.final == plain


async def test_capabilities_come_from_the_spec(provider: HttpProvider) -> None:
    """Capabilities list the spec's models, the kind's context window, streaming and the spec's tags."""
    capabilities = provider.get_capabilities()
    assert capabilities.models == ("sim-model",)
    assert capabilities.context_tokens == provider.spec.context_window
    assert capabilities.streaming and not capabilities.local
    assert capabilities.tags == ("chat",)


# -- errors -------------------------------------------------------------------------------------------------

ERRORS = [  # outcome, error class, retriable
    ("rate_limited", RateLimited, True),
    ("overloaded", ProviderUnavailable, True),
    ("server_error", ProviderUnavailable, True),
    ("auth_error", AuthError, False),
    ("bad_request", BadRequest, False),
    ("context_too_long", ContextTooLong, False),
    ("malformed", MalformedReply, True),
    ("truncated", MalformedReply, True),
]


@pytest.mark.parametrize("mode", ["generate", "stream"])
@pytest.mark.parametrize(("outcome", "error", "retriable"), ERRORS, ids=[e[0] for e in ERRORS])
async def test_each_fault_maps_to_its_error_class(provider: HttpProvider, sim: Control, mode: str, outcome: str,
                                                  error: type[ProviderError], retriable: bool) -> None:
    """A scripted fault raises its error class with the right retriable flag, naming the provider.

    A 429 carries the simulator's Retry-After (1 s), and so does Hugging Face's
    503 "model loading" (its estimated_time). HTTP errors name the status;
    vendor messages are quoted at most ~200 characters.
    """
    await sim.script(provider.spec.kind, outcome)
    with pytest.raises(error) as caught:
        await call(provider, mode)
    exc = caught.value
    assert exc.retriable is retriable and exc.provider == provider.name
    assert provider.name in str(exc) and len(str(exc)) < 400
    if outcome not in ("malformed", "truncated"):
        assert "HTTP " in str(exc)
    if outcome == "rate_limited":
        assert isinstance(exc, RateLimited) and exc.retry_after_s == 1.0
    if outcome == "overloaded" and provider.spec.kind == "huggingface":
        assert exc.retry_after_s == 1.0


async def test_an_error_event_inside_a_stream_is_provider_unavailable(provider: HttpProvider, sim: Control) -> None:
    """A vendor's mid-stream error event (server error / overloaded) ends the stream with ProviderUnavailable."""
    await sim.script(provider.spec.kind, "stream_error")
    with pytest.raises(ProviderUnavailable) as caught:
        await collect(provider)
    assert caught.value.retriable and "error event in the stream" in str(caught.value)


@pytest.mark.parametrize("mode", ["generate", "stream"])
async def test_no_answer_within_timeout_s_is_provider_timeout(kind: str, sim: Control, mode: str) -> None:
    """A request the server accepts but never answers fails after spec.timeout_s with a retriable ProviderTimeout."""
    async with started(spec_for(kind, sim.base, timeout_s=0.5)) as provider:
        await sim.script(kind, "timeout")
        with pytest.raises(ProviderTimeout) as caught:
            await call(provider, mode)
    assert caught.value.retriable and "0.5 s" in str(caught.value)


@pytest.mark.parametrize("mode", ["generate", "stream"])
async def test_connection_refused_is_provider_unavailable(kind: str, mode: str) -> None:
    """Nothing listening on the port gives a retriable ProviderUnavailable."""
    async with started(spec_for(kind, f"http://127.0.0.1:{free_port()}")) as provider:
        with pytest.raises(ProviderUnavailable) as caught:
            await call(provider, mode)
    assert caught.value.retriable and provider.name in str(caught.value)


# -- keys ---------------------------------------------------------------------------------------------------


async def test_a_wrong_key_is_auth_error_and_the_right_key_works(kind: str, sim: Control) -> None:
    """With the simulator requiring a key, a wrong key or none gives AuthError (not retriable); the right one works."""
    async with sim.profile(api_key=SECRET):
        for key in ("sk-wrong-key-9876543210", None):
            async with started(spec_for(kind, sim.base), key) as provider:
                with pytest.raises(AuthError) as caught:
                    await provider.generate(PROMPT)
                assert not caught.value.retriable
                assert key is None or key not in str(caught.value)
        async with started(spec_for(kind, sim.base), SECRET) as provider:
            assert (await provider.generate(PROMPT)).completion_tokens == 8


async def test_the_api_key_never_appears_in_an_error_message(kind: str, sim: Control) -> None:
    """For every fault, plain and streamed, str(error) does not contain the key (nor does a failed health check)."""
    outcomes = [outcome for outcome, _, _ in ERRORS] + ["stream_error"]
    messages: list[str] = []
    async with sim.profile(api_key=SECRET), started(spec_for(kind, sim.base), SECRET) as provider:
        for mode in ("generate", "stream"):
            for outcome in outcomes:
                await sim.script(kind, outcome)
                with pytest.raises(ProviderError) as caught:
                    await call(provider, mode)
                messages.append(str(caught.value))
    async with sim.profile(api_key="sk-another-key"), started(spec_for(kind, sim.base), SECRET) as provider:
        with pytest.raises(AuthError) as caught:
            await provider.generate(PROMPT)
        messages.append(str(caught.value))
        messages.append((await provider.health_check()).detail)
    assert len(messages) == 2 * len(outcomes) + 2
    assert not [message for message in messages if SECRET in message]


# -- connections and health -----------------------------------------------------------------------------------


async def test_sequential_requests_reuse_pooled_connections(provider: HttpProvider, sim: Control) -> None:
    """20 sequential calls (plain and streamed) open at most the pool's size of connections on the server."""
    for i in range(20):
        await call(provider, "generate" if i % 2 else "stream")
    stats = await sim.stats()
    assert stats["requests"][FLAVOR[provider.spec.kind]] == 20
    assert 1 <= stats["connections_opened"] <= POOL_SIZE
    pool = provider.pool_stats()
    assert pool["limit"] == POOL_SIZE and 1 <= pool["open"] <= POOL_SIZE and pool["opened"] <= POOL_SIZE


async def test_concurrent_requests_never_open_more_connections_than_the_pool(provider: HttpProvider,
                                                                             sim: Control) -> None:
    """Three times the pool size of concurrent calls all succeed over at most max_concurrent connections."""
    generations = await asyncio.gather(*(provider.generate(PROMPT) for _ in range(3 * POOL_SIZE)))
    assert all(g.completion_tokens == 8 for g in generations)
    assert (await sim.stats())["connections_opened"] <= POOL_SIZE


async def test_health_check_is_healthy_against_the_simulator(provider: HttpProvider, sim: Control) -> None:
    """health_check GETs the vendor's model list (or HF status) and reports healthy with its latency."""
    health = await provider.health_check()
    assert health.healthy and health.latency_s > 0
    assert (await sim.stats())["requests"]["health"] == 1


async def test_health_check_against_a_closed_port_is_unhealthy_without_raising(kind: str) -> None:
    """Nothing listening: health_check returns unhealthy with the reason instead of raising."""
    async with started(spec_for(kind, f"http://127.0.0.1:{free_port()}")) as provider:
        health = await provider.health_check()
    assert not health.healthy and "provider_unavailable" in health.detail


async def test_health_check_url_of_the_spec_replaces_the_vendor_default(kind: str, sim: Control) -> None:
    """With health_check_url set, that URL is checked instead of the vendor's model list."""
    async with started(spec_for(kind, sim.base, health_check_url=f"{sim.base}/_sim/stats")) as provider:
        health = await provider.health_check()
    assert health.healthy and "/_sim/stats" in health.detail
    assert (await sim.stats())["requests"]["health"] == 0


NO_USAGE_STREAM = b"".join(
    b'data: {"object": "chat.completion.chunk", "model": "old-server", "choices": [{"index": 0, "delta": '
    + f'{{"content": "{piece}"}}, "finish_reason": {finish}}}]}}\n\n'.encode()
    for piece, finish in (("one", "null"), (" two", "null"), (" three", '"stop"'))
) + b"data: [DONE]\n\n"


@asynccontextmanager
async def canned_chat_server(stream_body: bytes) -> AsyncIterator[str]:
    """A stand-in for a third-party chat-completions server streaming ``stream_body``; yields its base URL."""
    async def completions(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(stream_body)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_stream_without_usage_counts_deltas_and_estimates_the_prompt() -> None:
    """A chat-completions server that ignores stream_options: completion tokens = content deltas,
    prompt tokens = count_tokens of the prompt."""
    async with canned_chat_server(NO_USAGE_STREAM) as base, started(spec_for("openai_compatible", base)) as provider:
        deltas = await collect(provider)
    assert [d.delta for d in deltas[:-1]] == ["one", " two", " three"]
    prompt_tokens = provider.count_tokens("Answer briefly.\nhow does the router pick a provider")
    assert deltas[-1].final == Generation(text="one two three", model="old-server", prompt_tokens=prompt_tokens,
                                          completion_tokens=3, finish_reason="stop")


@pytest.mark.parametrize("cut", [len(b"data: [DONE]\n\n"), 20], ids=["before-done", "inside-an-event"])
async def test_a_stream_ending_cleanly_before_its_terminator_is_malformed(cut: int) -> None:
    """A body that ends properly (no transport error) but before ``data: [DONE]`` is a MalformedReply."""
    async with canned_chat_server(NO_USAGE_STREAM[:-cut]) as base, \
            started(spec_for("openai_compatible", base)) as provider:
        with pytest.raises(MalformedReply, match="ended before its terminator"):
            await collect(provider)


async def test_build_cloud_provider_refuses_a_kind_that_is_not_cloud() -> None:
    """The local kind (or any non-cloud kind) is a ConfigError, not a client."""
    with pytest.raises(ConfigError):
        build_cloud_provider(ProviderSpec(name="local", kind="local"), None)
