"""Dispatch: run a request down its provider chain until one answers.

No Kafka and no Faust here: the dispatcher gets providers, a plan and a clock,
and returns a :class:`Dispatched` with every attempt written down. What to do
with the outcome (result topic, DLQ, tables) is the agent's business.

A provider that is not configured is skipped with its reason. A failed call
is tried again on the same provider when its error is retriable and the
provider's :class:`RetryPolicy` allows (backoff with jitter, Retry-After
honoured); otherwise the chain moves on, unless no provider could help (a bad
request), which ends it at once. The request's deadline bounds every call,
the wait for the provider's bulkhead included; the most urgent request waiting
for a bulkhead gets the next free slot.

When a streamed attempt fails after it has sent deltas, the first delta of the
next attempt is flagged ``restart``: consumers drop the text received so far.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from llmrouter.breakers import health_outcome
from llmrouter.bulkhead import PriorityBulkhead
from llmrouter.core.breaker import Admission
from llmrouter.errors import MalformedReply, ProviderError, ProviderTimeout
from llmrouter.providers.base import Generation, LLMProvider, Prompt
from llmrouter.retry import NO_RETRY, RetryPolicy

OnDelta = Callable[[int, str, bool, str, bool], Awaitable[None]]  # (seq, delta, final, provider, restart)
Admit = Callable[[str, float], str | None]  # (provider, estimated cost in USD) -> reason to skip, or None


class Guard(Protocol):
    """A circuit breaker per provider: asked before each call (a retry too), told each call's outcome."""

    def admit(self, provider: str) -> Admission: ...

    def record(self, provider: str, ok: bool | None, *, probe: bool) -> None: ...


@dataclass(frozen=True)
class Attempt:
    provider: str
    outcome: str  # ok | error | skipped | timeout
    latency_ms: float = 0.0
    error_code: str | None = None
    error: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {"provider": self.provider, "outcome": self.outcome, "latency_ms": self.latency_ms,
                "error_code": self.error_code, "error": self.error}


@dataclass
class Dispatched:
    """The outcome of one request's trip down the chain."""

    generation: Generation | None = None
    provider: str | None = None
    cost_usd: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.generation is not None


@dataclass(frozen=True)
class Unavailable:
    """A chain entry that cannot take traffic, and why (e.g. no API key configured)."""

    reason: str


@dataclass(frozen=True)
class ChainEntry:
    """What the dispatcher needs of one provider: the provider and how to call it."""

    provider: LLMProvider | Unavailable
    timeout_s: float | None = None
    bulkhead: PriorityBulkhead | None = None
    retry: RetryPolicy = NO_RETRY


def estimated_cost_usd(provider: LLMProvider, prompt: Prompt) -> float:
    """The most a call can cost: the prompt's tokens (the provider's own count) plus max_tokens."""
    return provider.estimate_cost(provider.count_tokens(prompt.as_text()), prompt.max_tokens)


class Dispatcher:
    """Tries providers in order, within the request's deadline.

    ``entries`` is read at every dispatch, so a registry may add, replace and
    remove providers while the dispatcher runs. ``admit`` (budget checks) may
    refuse a provider before the call, given the estimated cost.
    """

    def __init__(
        self,
        entries: Mapping[str, ChainEntry],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        admit: Admit | None = None,
        guard: Guard | None = None,
    ) -> None:
        self._entries = entries
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._admit = admit
        self._guard = guard

    async def dispatch(
        self, prompt: Prompt, plan: Sequence[str], *, time_left_s: float, priority: int = 2,
        on_delta: OnDelta | None = None, before_call: Callable[[], None] | None = None,
    ) -> Dispatched:
        """Try ``plan`` in order; ``priority`` (0 = critical) orders the wait for a provider's bulkhead.

        ``before_call`` runs right before each provider call, once the bulkhead slot is
        held; whatever it raises ends the dispatch (a fence: the call must not be made).
        """
        outcome = Dispatched()
        call = _Call(replace(prompt, priority=priority), on_delta, self._clock() + time_left_s, before_call)
        for name in plan:
            entry = self._entries.get(name)
            provider = entry.provider if entry else Unavailable("not registered")
            if isinstance(provider, Unavailable):
                outcome.attempts.append(Attempt(name, "skipped", error_code="provider_unavailable",
                                                error=provider.reason))
                continue
            refusal = self._admit(name, estimated_cost_usd(provider, prompt)) if self._admit else None
            if refusal is not None:
                outcome.attempts.append(Attempt(name, "skipped", error_code="budget_exceeded", error=refusal))
                continue
            admission = self._guard.admit(name) if self._guard else Admission(True)
            if not admission.allowed:
                outcome.attempts.append(Attempt(name, "skipped", error_code="circuit_open", error=admission.reason))
                continue
            done = await self._try_provider(name, entry, provider, call, priority, outcome, admission)
            if done:
                return outcome
            if call.deadline_passed(self._clock()):
                break
        outcome.error_code = "all_providers_unavailable"
        if outcome.attempts:
            tried = "; ".join(f"{a.provider}: {a.error}" for a in outcome.attempts)
            outcome.error_message = f"every provider in the chain was skipped or failed ({tried})"
        else:
            outcome.error_message = "no provider in the chain may serve this request"
        return outcome

    async def _try_provider(
        self, name: str, entry: ChainEntry, provider: LLMProvider, call: _Call, priority: int, outcome: Dispatched,
        admission: Admission,
    ) -> bool:
        """Call one provider, retrying as its policy (and its breaker) allows; True when the dispatch is over."""
        retries = 0
        while True:
            left = call.deadline - self._clock()
            if left <= 0:
                self._report(name, None, admission)  # admitted, never called: a probe's slot is given back
                outcome.attempts.append(Attempt(name, "skipped", error_code="deadline_exceeded",
                                                error="no time left before the request's deadline"))
                return False
            timeout = min(left, entry.timeout_s or left)
            started = self._clock()
            try:
                async with asyncio.timeout(timeout), _slot(entry.bulkhead, priority):
                    generation = await call.run(provider, timeout)
            except TimeoutError:
                error: ProviderError = ProviderTimeout(f"no answer within {timeout:.1f}s", provider=name)
            except ProviderError as exc:
                error = exc
            except BaseException:  # cancelled (a drain), fenced: the call says nothing of the provider
                self._report(name, None, admission)
                raise
            else:
                self._report(name, True, admission)
                outcome.attempts.append(Attempt(name, "ok", _ms(self._clock() - started)))
                outcome.generation, outcome.provider = generation, name
                outcome.cost_usd = provider.estimate_cost(generation.prompt_tokens, generation.completion_tokens)
                return True
            kind = "timeout" if isinstance(error, ProviderTimeout) else "error"
            outcome.attempts.append(Attempt(name, kind, _ms(self._clock() - started), error.code, str(error)))
            self._report(name, health_outcome(error), admission)
            if not error.retriable and not error.next_provider_may_help:
                outcome.error_code, outcome.error_message = error.code, str(error)
                return True
            wait = entry.retry.wait_before_retry(error, retries_done=retries, rng=self._rng,
                                                 time_left_s=call.deadline - self._clock())
            if wait is None:
                return False
            await self._sleep(wait)
            retries += 1
            if self._guard:
                admission = self._guard.admit(name)
                if not admission.allowed:  # the breaker opened meanwhile: no retry on this provider
                    outcome.attempts.append(Attempt(name, "skipped", error_code="circuit_open", error=admission.reason))
                    return False

    def _report(self, name: str, ok: bool | None, admission: Admission) -> None:
        """Every admission ends in exactly one report, so a half-open probe never keeps its slot for ever."""
        if self._guard:
            self._guard.record(name, ok, probe=admission.probe)


class _Call:
    """One request's prompt, stream callback, deadline and fence, shared by its attempts."""

    def __init__(self, prompt: Prompt, on_delta: OnDelta | None, deadline: float,
                 before_call: Callable[[], None] | None) -> None:
        self.prompt, self.on_delta, self.deadline, self.before_call = prompt, on_delta, deadline, before_call
        self.seq = 0  # stream chunks sent so far, over every attempt

    def deadline_passed(self, now: float) -> bool:
        return now >= self.deadline

    async def run(self, provider: LLMProvider, timeout_s: float) -> Generation:
        """One call; the prompt carries its deadline on the providers' clock (time.monotonic)."""
        if self.before_call is not None:
            self.before_call()
        prompt = replace(self.prompt, deadline_s=time.monotonic() + timeout_s)
        if self.on_delta is None:
            return await provider.generate(prompt)
        restart = self.seq > 0  # an earlier attempt sent text: tell consumers to drop it
        final: Generation | None = None
        async for piece in provider.stream(prompt):
            if piece.final is not None:
                final = piece.final
            await self.on_delta(self.seq, piece.delta, piece.final is not None, provider.name, restart)
            self.seq += 1
            restart = False
        if final is None:
            raise MalformedReply(f"{provider.name} ended its stream without a final piece", provider=provider.name)
        return final


def _slot(bulkhead: PriorityBulkhead | None, priority: int) -> AbstractAsyncContextManager[None]:
    return bulkhead.slot(priority) if bulkhead else nullcontext()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
