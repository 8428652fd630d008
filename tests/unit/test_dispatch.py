"""The fallback chain: skip what cannot serve, retry what a retry could help,
move on after what another provider could help, stop at what none could, and
write every attempt down.

The providers here stand in for cloud APIs at the provider interface; the
local model has its own tests against real ONNX Runtime.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import random

import pytest

from llmrouter.dispatch.breakers import LocalBreakers
from llmrouter.dispatch.bulkhead import PriorityBulkhead
from llmrouter.core.breaker import BreakerConfig
from llmrouter.dispatch.dispatcher import Dispatcher
from llmrouter.dispatch.attempts import ChainEntry, Unavailable, estimated_cost_usd
from llmrouter.errors import AuthError, BadRequest, ContextTooLong, MalformedReply, ProviderUnavailable, RateLimited
from llmrouter.providers.base import Capabilities, Generation, Health, LLMProvider, Prompt, StreamDelta
from llmrouter.core.retry import RetryPolicy

PROMPT = Prompt(text="hi", max_tokens=4)


class Scripted(LLMProvider):
    """Answers, fails or hangs as told."""

    def __init__(self, name: str, *, error: Exception | None = None, hang: bool = False, price: float = 0.0,
                 errors: list[Exception] | None = None):
        self.name, self._error, self._hang, self._price = name, error, hang, price
        self._errors = list(errors or [])  # raised one per call, before answering
        self.calls = 0

    async def generate(self, prompt: Prompt) -> Generation:
        self.calls += 1
        if self._hang:
            await asyncio.Event().wait()
        if self._errors:
            raise self._errors.pop(0)
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


class Sleeps:
    """Records the waits the dispatcher asks for instead of sleeping."""

    def __init__(self):
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def dispatcher(providers: dict, *, timeouts_s: dict | None = None, retries: dict | None = None, **kwargs) -> Dispatcher:
    timeouts_s, retries = timeouts_s or {}, retries or {}
    entries = {name: ChainEntry(p, timeout_s=timeouts_s.get(name), retry=RetryPolicy(attempts=retries.get(name, 0)))
               for name, p in providers.items()}
    kwargs.setdefault("sleep", Sleeps())
    return Dispatcher(entries, rng=random.Random(7), **kwargs)


async def test_the_first_provider_that_answers_wins_and_its_cost_is_counted():
    """An unavailable entry is skipped with its reason; a 5xx moves on; the next answers."""
    down = Scripted("hf", error=ProviderUnavailable("503 from upstream"))
    up = Scripted("together", price=0.5)
    outcome = await dispatcher({"local": Unavailable("no model"), "hf": down, "together": up}).dispatch(
        PROMPT, ["local", "hf", "together"], time_left_s=5)
    assert outcome.ok and outcome.provider == "together" and outcome.cost_usd == 2.5
    assert [(a.provider, a.outcome, a.error_code) for a in outcome.attempts] == [
        ("local", "skipped", "provider_unavailable"), ("hf", "error", "provider_unavailable"),
        ("together", "ok", None)]
    assert outcome.attempts[0].error == "no model"


async def test_an_auth_error_is_not_retried_but_the_next_provider_is_tried():
    """A bad key is this provider's problem: no retry of it, the next provider answers."""
    bad, good = Scripted("hf", error=AuthError("401 invalid token")), Scripted("together")
    outcome = await dispatcher({"hf": bad, "together": good}, retries={"hf": 3}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert outcome.provider == "together" and bad.calls == 1
    assert outcome.attempts[0].error_code == "auth_error"


async def test_a_context_too_long_error_moves_on_to_a_provider_with_a_larger_window():
    """Not retried on the same provider, but another provider may fit the prompt."""
    small, large = Scripted("hf", error=ContextTooLong("2048 max")), Scripted("premium")
    outcome = await dispatcher({"hf": small, "premium": large}, retries={"hf": 3}).dispatch(
        PROMPT, ["hf", "premium"], time_left_s=5)
    assert outcome.provider == "premium" and small.calls == 1


async def test_a_bad_request_ends_the_chain_at_once():
    """A request the provider calls malformed would be refused by the next one too: stop with its code."""
    bad, never = Scripted("hf", error=BadRequest("400 temperature out of range")), Scripted("together")
    outcome = await dispatcher({"hf": bad, "together": never}).dispatch(PROMPT, ["hf", "together"], time_left_s=5)
    assert not outcome.ok and outcome.error_code == "bad_request" and never.calls == 0


async def test_a_retriable_error_is_retried_on_the_same_provider_with_backoff():
    """Two 5xx then an answer: three calls to one provider, two jittered waits within the cap."""
    flaky = Scripted("hf", errors=[ProviderUnavailable("500"), MalformedReply("cut stream")])
    sleeps = Sleeps()
    outcome = await dispatcher({"hf": flaky}, retries={"hf": 3}, sleep=sleeps).dispatch(
        PROMPT, ["hf"], time_left_s=5)
    assert outcome.provider == "hf" and flaky.calls == 3
    assert [a.outcome for a in outcome.attempts] == ["error", "error", "ok"]
    assert len(sleeps.waits) == 2 and 0 <= sleeps.waits[0] <= 0.1 and 0 <= sleeps.waits[1] <= 0.2


async def test_retries_stop_at_the_limit_and_the_chain_moves_on():
    """retry_attempts 2 means three calls at most; then the next provider."""
    down, up = Scripted("hf", error=ProviderUnavailable("503")), Scripted("together")
    outcome = await dispatcher({"hf": down, "together": up}, retries={"hf": 2}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert down.calls == 3 and outcome.provider == "together"


async def test_a_short_retry_after_is_waited_for_and_a_long_one_is_not():
    """Retry-After 1 s: wait it and retry. Retry-After 60 s: move on to the next provider at once."""
    sleeps = Sleeps()
    limited = Scripted("hf", errors=[RateLimited("429", retry_after_s=1.0)])
    outcome = await dispatcher({"hf": limited}, retries={"hf": 3}, sleep=sleeps).dispatch(
        PROMPT, ["hf"], time_left_s=5)
    assert outcome.provider == "hf" and sleeps.waits == [1.0]

    sleeps = Sleeps()
    busy, other = Scripted("hf", error=RateLimited("429", retry_after_s=60.0)), Scripted("together")
    outcome = await dispatcher({"hf": busy, "together": other}, retries={"hf": 3}, sleep=sleeps).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert outcome.provider == "together" and busy.calls == 1 and sleeps.waits == []


async def test_a_slow_provider_times_out_and_the_next_one_answers():
    """The per-provider timeout bounds a call; the attempt says timeout."""
    slow, fast = Scripted("hf", hang=True), Scripted("together")
    outcome = await dispatcher({"hf": slow, "together": fast}, timeouts_s={"hf": 0.05}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert outcome.provider == "together"
    assert (outcome.attempts[0].outcome, outcome.attempts[0].error_code) == ("timeout", "provider_timeout")


async def test_an_exhausted_chain_says_all_providers_unavailable_with_every_reason():
    """Nobody answers: error code all_providers_unavailable, the message lists each reason."""
    outcome = await dispatcher({"a": Unavailable("no key"), "b": Scripted("b", error=ProviderUnavailable("down"))}
                               ).dispatch(PROMPT, ["a", "b", "c"], time_left_s=5)
    assert outcome.error_code == "all_providers_unavailable"
    assert "a: no key" in outcome.error_message and "b: down" in outcome.error_message
    assert "c: not registered" in outcome.error_message


async def test_an_empty_plan_is_an_error_not_a_hang():
    """An allow-list that leaves nothing gives all_providers_unavailable at once."""
    outcome = await dispatcher({}).dispatch(PROMPT, [], time_left_s=5)
    assert outcome.error_code == "all_providers_unavailable" and outcome.attempts == []


async def test_no_time_left_skips_the_rest_of_the_chain():
    """A deadline already spent skips providers with deadline_exceeded instead of calling them."""
    never = Scripted("a")
    outcome = await dispatcher({"a": never}).dispatch(PROMPT, ["a"], time_left_s=0)
    assert never.calls == 0 and outcome.attempts[0].error_code == "deadline_exceeded"


class Wallet:
    """A Spend over one budget, writing down every reserve, settle and release."""

    def __init__(self, budget_usd: float) -> None:
        self.left, self.log = budget_usd, []

    async def reserve(self, provider: str, estimate_usd: float) -> str | None:
        self.log.append(("reserve", provider, estimate_usd))
        if estimate_usd > self.left:
            return f"${self.left:.2f} left"
        self.left -= estimate_usd
        return None

    async def settle(self, provider: str, cost_usd: float) -> None:
        self.log.append(("settle", provider, cost_usd))

    async def release(self, provider: str) -> None:
        self.log.append(("release", provider))


async def test_the_budget_sees_the_estimate_and_can_skip_a_provider():
    """reserve() gets the estimated cost (prompt tokens + max_tokens at the provider's price) before the call."""
    paid, free = Scripted("premium", price=0.5), Scripted("local")
    wallet = Wallet(budget_usd=2.0)
    outcome = await dispatcher({"premium": paid, "local": free}).dispatch(
        PROMPT, ["premium", "local"], time_left_s=5, spend=wallet)
    # "hi" is estimated at 2 tokens (a start token and a token per 3 letters): (2 + 4) x $0.5 / 1k x 1000
    assert wallet.log[0] == ("reserve", "premium", estimated_cost_usd(paid, PROMPT)) == ("reserve", "premium", 3.0)
    assert paid.calls == 0 and outcome.provider == "local"
    assert (outcome.attempts[0].outcome, outcome.attempts[0].error_code) == ("skipped", "budget_exceeded")


async def test_a_paid_call_settles_its_real_cost_and_a_failed_one_releases_its_reservation():
    """The answer books what the provider reported (2 + 3 tokens), a 503 books nothing."""
    down, paid = Scripted("hf", price=0.1, error=ProviderUnavailable("503")), Scripted("premium", price=0.1)
    wallet = Wallet(budget_usd=10.0)
    outcome = await dispatcher({"hf": down, "premium": paid}).dispatch(PROMPT, ["hf", "premium"], time_left_s=5,
                                                                      spend=wallet)
    assert outcome.provider == "premium" and outcome.cost_usd == pytest.approx(0.5)
    assert [entry[:2] for entry in wallet.log] == [("reserve", "hf"), ("release", "hf"), ("reserve", "premium"),
                                                   ("settle", "premium")]
    assert wallet.log[-1][2] == pytest.approx(0.5)


async def test_a_timed_out_call_books_its_estimate():
    """A call that timed out may have been served and billed: its reservation is settled, not released."""
    slow = Scripted("premium", price=0.1, hang=True)
    wallet = Wallet(budget_usd=10.0)
    await dispatcher({"premium": slow}, timeouts_s={"premium": 0.05}).dispatch(PROMPT, ["premium"], time_left_s=5,
                                                                               spend=wallet)
    assert wallet.log == [("reserve", "premium", pytest.approx(0.6)), ("settle", "premium", pytest.approx(0.6))]


async def test_a_request_only_an_over_budget_provider_could_serve_is_budget_exceeded():
    """The free provider failed, the paid one is over budget: the request fails for the budget, not for providers."""
    down, paid = Scripted("local", error=ProviderUnavailable("down")), Scripted("premium", price=1.0)
    outcome = await dispatcher({"local": down, "premium": paid}).dispatch(
        PROMPT, ["local", "premium"], time_left_s=5, spend=Wallet(budget_usd=0.1))
    assert not outcome.ok and outcome.error_code == "budget_exceeded" and paid.calls == 0


class Bucket:
    """A Limiter with a fixed number of tokens per provider, told of 429s."""

    def __init__(self, **tokens: int) -> None:
        self.tokens, self.throttled_with = dict(tokens), []

    def take(self, provider: str) -> str | None:
        if self.tokens.get(provider, 1) <= 0:
            return f"{provider}: no token"
        self.tokens[provider] = self.tokens.get(provider, 1) - 1
        return None

    def throttled(self, provider: str, retry_after_s: float | None) -> None:
        self.throttled_with.append((provider, retry_after_s))

    def free_in(self, provider: str) -> float:
        return 0.0 if self.tokens.get(provider, 1) > 0 else float("inf")  # never refilled


async def test_a_provider_out_of_tokens_is_skipped_at_once_and_a_429_is_passed_to_the_limiter():
    """No token: skipped with rate_limited and no call. A 429 tells the limiter its Retry-After."""
    limited, spare = Scripted("hf", error=RateLimited("slow down", retry_after_s=3.0)), Scripted("together")
    bucket = Bucket(hf=1)
    first = await dispatcher({"hf": limited, "together": spare}, limiter=bucket).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert first.provider == "together" and limited.calls == 1 and bucket.throttled_with == [("hf", 3.0)]
    second = await dispatcher({"hf": limited, "together": spare}, limiter=bucket).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert limited.calls == 1 and (second.attempts[0].outcome, second.attempts[0].error_code) == (
        "skipped", "rate_limited")


async def test_a_rate_refusal_gives_the_half_open_probe_back():
    """The breaker admitted a probe, the rate limit refused the call: the probe slot is free for the next call."""
    breakers = LocalBreakers(BreakerConfig(consecutive_failures=1, cooldown_s=1, half_open_probes=1, ramp_s=0),
                             clock=lambda: clock[0])
    clock = [0.0]
    breakers.record("hf", False, probe=False)  # open
    clock[0] = 2.0  # cool-down over: half-open, one probe
    hf = Scripted("hf")
    await dispatcher({"hf": hf}, guard=breakers, limiter=Bucket(hf=0)).dispatch(PROMPT, ["hf"], time_left_s=5)
    outcome = await dispatcher({"hf": hf}, guard=breakers).dispatch(PROMPT, ["hf"], time_left_s=5)
    assert outcome.provider == "hf" and breakers.states() == {"hf": "closed"}


async def test_streaming_hands_each_delta_on_in_order_and_flags_the_last():
    """on_delta gets (seq, delta, final, provider, restart) for every piece; the generation is the final one."""
    seen = []

    async def on_delta(seq, delta, final, provider, restart):
        seen.append((seq, delta, final, provider, restart))

    outcome = await dispatcher({"t": Scripted("t")}).dispatch(PROMPT, ["t"], time_left_s=5, on_delta=on_delta)
    assert seen == [(0, "t sa", False, "t", False), (1, "ys hi", True, "t", False)]
    assert outcome.generation.text == "t says hi"


class CutStream(Scripted):
    """Sends one delta, then its stream breaks."""

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        self.calls += 1
        yield StreamDelta(delta="half an ans")
        raise MalformedReply("stream cut before [DONE]")


async def test_a_stream_cut_midway_falls_over_and_flags_the_restart():
    """The next provider's first delta says restart, so consumers drop the half answer; seq keeps counting."""
    seen = []

    async def on_delta(seq, delta, final, provider, restart):
        seen.append((seq, provider, final, restart))

    outcome = await dispatcher({"a": CutStream("a"), "b": Scripted("b")}).dispatch(
        PROMPT, ["a", "b"], time_left_s=5, on_delta=on_delta)
    assert outcome.provider == "b"
    assert seen == [(0, "a", False, False), (1, "b", False, True), (2, "b", True, False)]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def breakers(clock: Clock, transitions: list | None = None, **config) -> LocalBreakers:
    settings = {"min_calls": 100, "consecutive_failures": 2, "cooldown_s": 5, "half_open_probes": 1, "ramp_s": 0}
    return LocalBreakers(BreakerConfig(**(settings | config)), clock=clock,
                         on_transition=(lambda name, moved: transitions.append((name, moved.after.value)))
                         if transitions is not None else None)


async def test_once_a_providers_breaker_opens_requests_skip_it_and_cost_one_call_each():
    """hf down: two requests pay a failed call to hf each, which opens its breaker; the next ones go
    straight to together (one call per request), until the cool-down lets one probe through."""
    clock, moves = Clock(), []
    down, up = Scripted("hf", error=ProviderUnavailable("503")), Scripted("together")
    chain = dispatcher({"hf": down, "together": up}, guard=breakers(clock, moves))
    for _ in range(2):
        assert (await chain.dispatch(PROMPT, ["hf", "together"], time_left_s=5)).provider == "together"
    assert down.calls == 2 and moves == [("hf", "open")]
    for _ in range(5):
        outcome = await chain.dispatch(PROMPT, ["hf", "together"], time_left_s=5)
        assert [(a.provider, a.outcome, a.error_code) for a in outcome.attempts] == [
            ("hf", "skipped", "circuit_open"), ("together", "ok", None)]
    assert down.calls == 2
    clock.t = 5.0
    await chain.dispatch(PROMPT, ["hf", "together"], time_left_s=5)  # the probe: hf still down
    assert down.calls == 3 and moves == [("hf", "open"), ("hf", "half_open"), ("hf", "open")]


async def test_a_recovered_provider_closes_its_breaker_through_a_successful_probe():
    clock, moves = Clock(), []
    flaky = Scripted("hf", errors=[ProviderUnavailable("503"), ProviderUnavailable("503")])
    chain = dispatcher({"hf": flaky, "together": Scripted("together")}, guard=breakers(clock, moves))
    for _ in range(2):
        await chain.dispatch(PROMPT, ["hf", "together"], time_left_s=5)
    clock.t = 5.0
    assert (await chain.dispatch(PROMPT, ["hf", "together"], time_left_s=5)).provider == "hf"
    assert moves == [("hf", "open"), ("hf", "half_open"), ("hf", "closed")]


async def test_429s_and_bad_requests_never_open_a_breaker():
    """Rate limits are the bucket's business and a refused request says nothing of the provider's health."""
    clock = Clock()
    guard = breakers(clock)
    limited = Scripted("hf", error=RateLimited("429"))
    chain = dispatcher({"hf": limited, "together": Scripted("together")}, guard=guard)
    for _ in range(10):
        await chain.dispatch(PROMPT, ["hf", "together"], time_left_s=5)
    refusing = dispatcher({"hf": Scripted("hf", error=BadRequest("no"))}, guard=guard)
    for _ in range(10):
        await refusing.dispatch(PROMPT, ["hf"], time_left_s=5)
    assert limited.calls == 10 and guard.states() == {"hf": "closed", "together": "closed"}


async def test_retries_stop_when_the_breaker_opens_between_them():
    """retry_attempts 5, but two failures in a row open the breaker: the third call is not made."""
    clock = Clock()
    down, up = Scripted("hf", error=ProviderUnavailable("503")), Scripted("together")
    outcome = await dispatcher({"hf": down, "together": up}, retries={"hf": 5}, guard=breakers(clock)).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5)
    assert down.calls == 2 and outcome.provider == "together"
    assert [a.error_code for a in outcome.attempts if a.provider == "hf"] == [
        "provider_unavailable", "provider_unavailable", "circuit_open"]


async def test_a_probe_cancelled_mid_call_gives_its_slot_back():
    """A drain cancels the only half-open probe while it waits on the provider: the breaker must not stay
    half-open with its probe out for ever; the next request probes again (and closes it)."""
    clock = Clock()
    guard = breakers(clock)
    hanging = Scripted("hf", hang=True)
    chain = dispatcher({"hf": hanging}, guard=guard)
    for _ in range(2):
        guard.record("hf", False, probe=False)
    assert guard.states() == {"hf": "open"}
    clock.t = 5.0
    probe = asyncio.create_task(chain.dispatch(PROMPT, ["hf"], time_left_s=5))
    while hanging.calls == 0:
        await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    recovered = dispatcher({"hf": Scripted("hf")}, guard=guard)
    assert (await recovered.dispatch(PROMPT, ["hf"], time_left_s=5)).provider == "hf"
    assert guard.states() == {"hf": "closed"}


class Slow(Scripted):
    """Answers after ``delay_s``."""

    def __init__(self, name: str, delay_s: float) -> None:
        super().__init__(name)
        self.delay_s = delay_s

    async def generate(self, prompt: Prompt) -> Generation:
        await asyncio.sleep(self.delay_s)
        return await super().generate(prompt)


async def test_the_wait_for_a_bulkhead_slot_does_not_count_against_the_providers_timeout():
    """One slot, calls of 0.15 s, a provider timeout of 0.2 s: the second request waits 0.15 s for the slot
    and is still answered, because the provider is timed from the moment its call starts."""
    slow = Slow("hf", delay_s=0.15)
    entries = {"hf": ChainEntry(slow, timeout_s=0.2, bulkhead=PriorityBulkhead(1))}
    dispatcher = Dispatcher(entries)
    first, second = await asyncio.gather(*(dispatcher.dispatch(PROMPT, ["hf"], time_left_s=5) for _ in range(2)))
    assert first.ok and second.ok and slow.calls == 2


async def test_a_request_whose_deadline_passes_waiting_for_a_slot_is_skipped_without_a_call():
    """The deadline still bounds the wait: the attempt says so, and the provider is not blamed (no timeout)."""
    slow = Slow("hf", delay_s=0.3)
    entries = {"hf": ChainEntry(slow, timeout_s=1.0, bulkhead=PriorityBulkhead(1))}
    dispatcher = Dispatcher(entries)
    _, late = await asyncio.gather(dispatcher.dispatch(PROMPT, ["hf"], time_left_s=5),
                                   dispatcher.dispatch(PROMPT, ["hf"], time_left_s=0.1))
    assert not late.ok and slow.calls == 1
    assert (late.attempts[0].outcome, late.attempts[0].error_code) == ("skipped", "deadline_exceeded")
    assert "waiting for a free slot" in late.attempts[0].error


class SleepClock:
    """A clock the fake sleep moves: the dispatcher and the breakers share it."""

    def __init__(self) -> None:
        self.now, self.waits = 100.0, []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def open_breakers(clock: SleepClock, *names: str, cooldown_s: float) -> LocalBreakers:
    breakers = LocalBreakers(BreakerConfig(consecutive_failures=1, cooldown_s=cooldown_s, max_cooldown_s=60,
                                           half_open_probes=1, ramp_s=0), clock=clock)
    for name in names:
        breakers.record(name, False, probe=False)
    return breakers


async def test_when_every_provider_is_open_the_request_waits_for_the_first_to_reopen():
    """hf opens again in 2 s, together in 5 s; the deadline is 10 s away: the request waits 2 s and hf's probe
    answers it, instead of failing at once with every other request caught in the outage."""
    clock = SleepClock()
    hf, together = Scripted("hf"), Scripted("together")
    breakers = open_breakers(clock, "hf", cooldown_s=2)
    breakers.follow("together", 5.0, "open for the group")
    outcome = await dispatcher({"hf": hf, "together": together}, clock=clock, sleep=clock.sleep,
                               guard=breakers).dispatch(PROMPT, ["hf", "together"], time_left_s=10)
    assert outcome.provider == "hf" and clock.waits == [pytest.approx(2.0)]
    assert [a.error_code for a in outcome.attempts] == ["circuit_open", "circuit_open", None]


async def test_a_request_whose_deadline_comes_before_any_provider_reopens_fails_at_once():
    clock = SleepClock()
    breakers = open_breakers(clock, "hf", cooldown_s=30)
    outcome = await dispatcher({"hf": Scripted("hf")}, clock=clock, sleep=clock.sleep,
                               guard=breakers).dispatch(PROMPT, ["hf"], time_left_s=10)
    assert not outcome.ok and outcome.error_code == "all_providers_unavailable" and clock.waits == []


async def test_a_provider_that_failed_is_not_waited_for():
    """One provider was called and failed, the other is open: the outage is not only 'for a while'."""
    clock = SleepClock()
    breakers = open_breakers(clock, "together", cooldown_s=1)
    down = Scripted("hf", error=ProviderUnavailable("503"))
    outcome = await dispatcher({"hf": down, "together": Scripted("together")}, clock=clock, sleep=clock.sleep,
                               guard=breakers).dispatch(PROMPT, ["hf", "together"], time_left_s=10)
    assert not outcome.ok and clock.waits == []


class Hangs(Scripted):
    """Never answers until cancelled; notes the cancellation."""

    def __init__(self, name: str, price: float = 0.0) -> None:
        super().__init__(name, price=price)
        self.cancelled = False

    async def generate(self, prompt: Prompt) -> Generation:
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_slow_first_provider_is_hedged_the_first_good_answer_wins_and_both_costs_are_booked():
    """F037: hf hangs; after 50 ms together is asked too and answers; hf's call is cancelled, its estimate
    booked (it may be billed) beside together's real cost, and the attempts say what happened."""
    slow, quick = Hangs("hf", price=0.1), Scripted("together", price=0.1)
    wallet = Wallet(budget_usd=10.0)
    outcome = await Dispatcher({"hf": ChainEntry(slow), "together": ChainEntry(quick)}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5, spend=wallet, hedge_after_s=0.05)
    assert outcome.provider == "together" and slow.cancelled and quick.calls == 1
    assert [(a.provider, a.outcome, a.error_code) for a in outcome.attempts] == [
        ("hf", "cancelled", "hedge_lost"), ("together", "ok", None)]
    assert outcome.cost_usd == pytest.approx(0.5 + 0.6)  # together's 5 tokens and hf's estimate (2 + 4 tokens)
    assert ("settle", "hf", pytest.approx(0.6)) in wallet.log and ("settle", "together", pytest.approx(0.5)) in wallet.log


async def test_a_first_provider_that_answers_in_time_is_not_hedged():
    quick, spare = Slow("hf", delay_s=0.01), Scripted("together")
    outcome = await Dispatcher({"hf": ChainEntry(quick), "together": ChainEntry(spare)}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5, hedge_after_s=0.2)
    assert outcome.provider == "hf" and spare.calls == 0 and len(outcome.attempts) == 1


async def test_when_the_hedged_provider_fails_the_slow_first_one_may_still_answer():
    """The second call fails at once; the first, slower, answers: one failure does not end the hedge."""
    slow, broken = Slow("hf", delay_s=0.15), Scripted("together", error=ProviderUnavailable("503"))
    outcome = await Dispatcher({"hf": ChainEntry(slow), "together": ChainEntry(broken)}).dispatch(
        PROMPT, ["hf", "together"], time_left_s=5, hedge_after_s=0.05)
    assert outcome.provider == "hf" and broken.calls == 1
    assert [(a.provider, a.outcome) for a in outcome.attempts] == [("hf", "ok"), ("together", "error")]


class Recording(Scripted):
    """Answers at once and keeps each prompt it was given."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.prompts: list[Prompt] = []

    async def generate(self, prompt: Prompt) -> Generation:
        self.prompts.append(prompt)
        return await super().generate(prompt)


async def test_the_provider_s_deadline_is_on_the_dispatcher_s_own_clock():
    """The request's deadline (an absolute time on the dispatcher's clock) reaches the provider on that same clock
    object, capped by the provider's timeout: moving the clock moves the provider's deadline too."""
    clock, hf = SleepClock(), Recording("hf")
    await dispatcher({"hf": hf}, clock=clock, timeouts_s={"hf": 3}).dispatch(PROMPT, ["hf"], deadline_s=110.0)
    deadline = hf.prompts[0].deadline
    assert deadline is not None and deadline.clock is clock
    assert deadline.at_s == pytest.approx(103.0) and deadline.left_s() == pytest.approx(3.0)
    clock.now += 2.5
    assert deadline.left_s() == pytest.approx(0.5)


async def test_a_deadline_already_passed_on_the_dispatcher_s_clock_calls_nothing():
    """deadline_s before the clock's now: the provider is skipped with deadline_exceeded, never called."""
    clock, hf = SleepClock(), Recording("hf")
    outcome = await dispatcher({"hf": hf}, clock=clock).dispatch(PROMPT, ["hf"], deadline_s=99.0)
    assert hf.calls == 0 and [a.error_code for a in outcome.attempts] == ["deadline_exceeded"]
