"""The fallback chain: skip what cannot serve, move on after a retriable error,
stop at one no provider could help, and write every attempt down.

The providers here stand in for cloud APIs at the provider interface; the
local model has its own tests against real ONNX Runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from llmrouter.dispatch import Dispatcher, Unavailable
from llmrouter.errors import AuthError, ProviderUnavailable
from llmrouter.providers.base import Capabilities, Generation, Health, LLMProvider, Prompt, StreamDelta

PROMPT = Prompt(text="hi", max_tokens=4)


class Scripted(LLMProvider):
    """Answers, fails or hangs as told."""

    def __init__(self, name: str, *, error: Exception | None = None, hang: bool = False, price: float = 0.0):
        self.name, self._error, self._hang, self._price = name, error, hang, price
        self.calls = 0

    async def generate(self, prompt: Prompt) -> Generation:
        self.calls += 1
        if self._hang:
            await asyncio.Event().wait()
        if self._error:
            raise self._error
        return Generation(text=f"{self.name} says hi", model=f"{self.name}-m", prompt_tokens=2, completion_tokens=3)

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        generation = await self.generate(prompt)
        yield StreamDelta(delta=generation.text[:4])
        yield StreamDelta(delta=generation.text[4:], final=generation)

    async def health_check(self) -> Health:
        return Health(healthy=True)

    def get_capabilities(self) -> Capabilities:
        return Capabilities(models=(f"{self.name}-m",), context_tokens=2048)

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self._price * (prompt_tokens + completion_tokens)


async def test_the_first_provider_that_answers_wins_and_its_cost_is_counted():
    """An unavailable entry is skipped with its reason; a 5xx moves on; the next answers."""
    down = Scripted("hf", error=ProviderUnavailable("503 from upstream"))
    up = Scripted("together", price=0.5)
    dispatcher = Dispatcher({"local": Unavailable("no model"), "hf": down, "together": up}, timeouts_s={})
    outcome = await dispatcher.dispatch(PROMPT, ["local", "hf", "together"], time_left_s=5)
    assert outcome.ok and outcome.provider == "together" and outcome.cost_usd == 2.5
    assert [(a.provider, a.outcome, a.error_code) for a in outcome.attempts] == [
        ("local", "skipped", "provider_unavailable"), ("hf", "error", "provider_unavailable"),
        ("together", "ok", None)]
    assert outcome.attempts[0].error == "no model"


async def test_a_non_retriable_error_ends_the_chain_at_once():
    """An auth error is not something the next provider fixes... but it is this provider's
    problem only; bad requests and auth both stop the chain with their code."""
    bad = Scripted("hf", error=AuthError("401 invalid token"))
    never = Scripted("together")
    outcome = await Dispatcher({"hf": bad, "together": never}, timeouts_s={}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert not outcome.ok and outcome.error_code == "auth_error" and never.calls == 0


async def test_a_slow_provider_times_out_and_the_next_one_answers():
    """The per-provider timeout bounds a call; the attempt says timeout."""
    slow, fast = Scripted("hf", hang=True), Scripted("together")
    outcome = await Dispatcher({"hf": slow, "together": fast}, timeouts_s={"hf": 0.05}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert outcome.provider == "together"
    assert (outcome.attempts[0].outcome, outcome.attempts[0].error_code) == ("timeout", "provider_timeout")


async def test_an_exhausted_chain_says_all_providers_unavailable_with_every_reason():
    """Nobody answers: error code all_providers_unavailable, the message lists each reason."""
    outcome = await Dispatcher({"a": Unavailable("no key"), "b": Scripted("b", error=ProviderUnavailable("down"))},
                               timeouts_s={}).dispatch(PROMPT, ["a", "b", "c"], time_left_s=5)
    assert outcome.error_code == "all_providers_unavailable"
    assert "a: no key" in outcome.error_message and "b: down" in outcome.error_message
    assert "c: not registered" in outcome.error_message


async def test_an_empty_plan_is_an_error_not_a_hang():
    """An allow-list that leaves nothing gives all_providers_unavailable at once."""
    outcome = await Dispatcher({}, timeouts_s={}).dispatch(PROMPT, [], time_left_s=5)
    assert outcome.error_code == "all_providers_unavailable" and outcome.attempts == []


async def test_no_time_left_skips_the_rest_of_the_chain():
    """A deadline already spent skips providers with deadline_exceeded instead of calling them."""
    never = Scripted("a")
    outcome = await Dispatcher({"a": never}, timeouts_s={}).dispatch(PROMPT, ["a"], time_left_s=0)
    assert never.calls == 0 and outcome.attempts[0].error_code == "deadline_exceeded"


async def test_streaming_hands_each_delta_on_in_order_and_flags_the_last():
    """on_delta gets (seq, delta, final, provider) for every piece; the generation is the final one."""
    seen = []

    async def on_delta(seq, delta, final, provider):
        seen.append((seq, delta, final, provider))

    outcome = await Dispatcher({"t": Scripted("t")}, timeouts_s={}).dispatch(
        PROMPT, ["t"], time_left_s=5, on_delta=on_delta)
    assert seen == [(0, "t sa", False, "t"), (1, "ys hi", True, "t")]
    assert outcome.generation.text == "t says hi"
