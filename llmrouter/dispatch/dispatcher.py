"""Dispatch: run a request down its provider chain until one answers.

No Kafka and no Faust here: the dispatcher gets providers, a plan and a clock,
and a deadline as an absolute time on that clock, which each prompt carries on
to its provider as a :class:`~llmrouter.providers.base.Deadline` on the same
clock object (so a test that moves the clock moves every deadline); it returns
a :class:`Dispatched` with every attempt written down. What to do with the outcome (result topic, DLQ, tables) is the agent's business.

A provider that is not configured is skipped with its reason. A failed call
is tried again on the same provider when its error is retriable and the
provider's :class:`RetryPolicy` allows (backoff with jitter, Retry-After
honoured); otherwise the chain moves on, unless no provider could help (a bad
request), which ends it at once. The request's deadline bounds every call,
the wait for the provider's bulkhead included; the most urgent request waiting
for a bulkhead gets the next free slot.

When a streamed attempt fails after it has sent deltas, the first delta of the
next attempt is flagged ``restart``: consumers drop the text received so far.

When every provider of the chain was skipped for a while only (its breaker
open, its rate used up), the request waits for the first of them to take
calls again, if that comes before its deadline, and goes down the chain once
more (at most ``MAX_WAITS`` times) rather than fail at once with all the
others caught in the same outage.

Before each call (a retry too) three guards may refuse the provider, and the
chain moves on at once: its circuit breaker (``circuit_open``), its rate limit
(``rate_limited``), and the request's budget (``budget_exceeded``): a
:class:`Spend` reserves the call's estimated cost before it and settles the real
cost after it. A request no provider answered because a budget refused one is
``budget_exceeded``: only that provider could have served it.

Each dispatch is a span (``dispatch``), and each provider call in it one more
(``provider.call``, a child of it): OpenTelemetry's API only, the tracer given
(none: nothing is recorded).

The records and guards a dispatch works with are in :mod:`.attempts`, one
request's call (its deadline, fence, stream and the provider call's span) in
:mod:`.call`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import replace
from typing import Any

from opentelemetry import trace

from llmrouter.core.breaker import POLL_S, Admission
from llmrouter.dispatch.attempts import (Attempt, ChainEntry, Dispatched, Guard, Limiter, OnDelta, Spend,
                                         Unavailable, estimated_cost_usd)
from llmrouter.dispatch.breakers import health_outcome
from llmrouter.dispatch.bulkhead import PriorityBulkhead
from llmrouter.dispatch.call import Call
from llmrouter.errors import ProviderError, ProviderTimeout
from llmrouter.providers.base import Clock, LLMProvider, Prompt

__all__ = ["Dispatcher"]  # its records and guards: llmrouter.dispatch.attempts

_Admitted = tuple[str, "ChainEntry", LLMProvider, Admission]  # a provider cleared to be called
MAX_WAITS = 10  # rounds of the chain a request waits for when every provider is shut for a while
FOR_A_WHILE = frozenset({"circuit_open", "rate_limited"})  # skips that end by themselves


class Dispatcher:
    """Tries providers in order, within the request's deadline.

    ``entries`` is read at every dispatch, so a registry may add, replace and
    remove providers while the dispatcher runs.
    """

    def __init__(
        self,
        entries: Mapping[str, ChainEntry],
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        guard: Guard | None = None,
        limiter: Limiter | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._entries = entries
        self._tracer = tracer or trace.NoOpTracer()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._guard = guard
        self.clock = clock  # the router's clock: deadlines handed in are absolute times on it
        self._limiter = limiter

    async def dispatch(self, prompt: Prompt, plan: Sequence[str], **options: Any) -> Dispatched:
        """:meth:`_dispatch` (``options`` are its) in the span ``dispatch``: the chain, and how it ended."""
        with self._tracer.start_as_current_span("dispatch", attributes={"llm.chain": list(plan)}) as span:
            outcome = await self._dispatch(prompt, plan, **options)
            span.set_attributes({"llm.attempts": len(outcome.attempts), "llm.provider": outcome.provider or "",
                                 "llm.error_code": outcome.error_code or ""})
            return outcome

    async def _dispatch(
        self, prompt: Prompt, plan: Sequence[str], *, deadline_s: float | None = None,
        time_left_s: float | None = None, priority: int = 2,
        on_delta: OnDelta | None = None, before_call: Callable[[], None] | None = None, spend: Spend | None = None,
        wait: Callable[[float], Awaitable[None]] | None = None, hedge_after_s: float | None = None,
    ) -> Dispatched:
        """Try ``plan`` in order within ``deadline_s`` (an absolute time on :attr:`clock`; or ``time_left_s``
        from now); ``priority`` (0 = critical) orders the wait for a provider's bulkhead.

        ``before_call`` runs right before each provider call, once the bulkhead slot is
        held; whatever it raises ends the dispatch (a fence: the call must not be made).
        ``spend`` (None: nothing is booked) holds the request's budgets. ``wait`` sleeps before a retry
        (default: the dispatcher's sleep); the answer agent's lets its lane slot go meanwhile.
        ``hedge_after_s`` (not for streams): ask the next provider too when one is that slow (F037).
        """
        outcome = Dispatched()
        if deadline_s is None:
            if time_left_s is None:
                raise TypeError("dispatch needs deadline_s (absolute, on the dispatcher's clock) or time_left_s")
            deadline_s = self.clock() + time_left_s
        call = Call(replace(prompt, priority=priority), on_delta, deadline_s, before_call, spend,
                     wait or self._sleep, hedge_after_s, tracer=self._tracer, clock=self.clock)
        for _ in range(MAX_WAITS + 1):
            first = len(outcome.attempts)
            if await self._down_the_chain(plan, call, priority, outcome):
                return outcome
            reopens_in = self._shut_for(outcome.attempts[first:])
            if reopens_in is None or self.clock() + reopens_in >= call.deadline:
                break
            await call.wait(reopens_in)
        if any(a.error_code == "budget_exceeded" for a in outcome.attempts):
            outcome.error_code = "budget_exceeded"  # a provider was there to serve it, had the budget allowed
        else:
            outcome.error_code = "all_providers_unavailable"
        if outcome.attempts:
            tried = "; ".join(f"{a.provider}: {a.error}" for a in outcome.attempts)
            outcome.error_message = f"every provider in the chain was skipped or failed ({tried})"
        else:
            outcome.error_message = "no provider in the chain may serve this request"
        return outcome

    async def _down_the_chain(self, plan: Sequence[str], call: Call, priority: int, outcome: Dispatched) -> bool:
        """One trip down ``plan``; True when it ended the dispatch (an answer, or an error no provider can help)."""
        rest = list(plan)
        while rest:
            admitted = await self._next_admitted(rest, call, outcome)
            if admitted is None:
                break
            if call.hedge_after_s is not None and call.on_delta is None:
                done = await self._hedged(admitted, rest, call, priority, outcome)
            else:
                done = await self._try_provider(*admitted, call, priority, outcome)
            if done:
                return True
            if call.deadline_passed(self.clock()):
                break
        return False

    async def _next_admitted(self, rest: list[str], call: Call, outcome: Dispatched) -> _Admitted | None:
        """Take names off ``rest`` until one is available and admitted (each skip written down)."""
        while rest:
            name = rest.pop(0)
            entry = self._entries.get(name)
            provider = entry.provider if entry else Unavailable("not registered")
            if isinstance(provider, Unavailable):
                outcome.attempts.append(Attempt(name, "skipped", error_code="provider_unavailable",
                                                error=provider.reason))
                continue
            admission = await self._admit(name, provider, call, outcome)
            if admission is not None:
                return name, entry, provider, admission
        return None

    async def _hedged(self, first: _Admitted, rest: list[str], call: Call, priority: int,
                      outcome: Dispatched) -> bool:
        """F037: call ``first``; if it has not answered within ``hedge_after_s``, call the next provider too.
        The first good answer wins and the other call is cancelled; what both cost is booked (the loser's
        estimate, once its call had started: it may be billed). A call that fails leaves the other running."""
        branches = {asyncio.ensure_future(self._branch(first, call, priority)): first[0]}
        try:
            done, _ = await asyncio.wait(branches, timeout=call.hedge_after_s)
            if not done:
                second = await self._next_admitted(rest, call, outcome)
                if second is not None:
                    branches[asyncio.ensure_future(self._branch(second, call, priority))] = second[0]
            pending, results = set(branches), {}
            while pending and not any(out.ok for _, out in results.values()):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                results.update({task: task.result() for task in done})
        finally:
            for task in branches:
                task.cancel()
            await asyncio.gather(*branches, return_exceptions=True)
        winner = next((out for _, out in results.values() if out.ok), None)
        for task, name in branches.items():  # in the order they were asked
            if task in results:
                outcome.attempts.extend(results[task][1].attempts)
            else:  # the loser, cancelled
                outcome.attempts.append(await self._lost(name, call, winner))
        if winner is not None:
            outcome.generation, outcome.provider = winner.generation, winner.provider
            outcome.cost_usd = winner.cost_usd + sum(call.hedge_costs)
            return True
        ended = [out for done_, out in results.values() if done_]
        if ended:
            outcome.error_code, outcome.error_message = ended[0].error_code, ended[0].error_message
        return bool(ended)

    async def _branch(self, admitted: _Admitted, call: Call, priority: int) -> tuple[bool, Dispatched]:
        branch = call.branch(admitted[0])
        out = Dispatched()
        return await self._try_provider(*admitted, branch, priority, out), out

    async def _lost(self, name: str, call: Call, winner: Dispatched | None) -> Attempt:
        """The hedge's cancelled call: its estimate booked if it had started, its reservation freed if not."""
        started, entry = call.started.get(name), self._entries.get(name)
        if started is None:
            if call.spend is not None:
                await call.spend.release(name)
        elif entry is not None and isinstance(entry.provider, LLMProvider):
            estimate = call.estimate(entry.provider)
            call.hedge_costs.append(estimate)
            if call.spend is not None:
                await call.spend.settle(name, estimate)
        why = f"{winner.provider} answered first" if winner else "cancelled"
        return Attempt(name, "cancelled", _ms(self.clock() - started) if started is not None else 0.0,
                       error_code="hedge_lost", error=why)

    def _shut_for(self, attempts: Sequence[Attempt]) -> float | None:
        """When no provider was called and some were shut only for a while: how soon the first opens again."""
        if any(a.outcome != "skipped" for a in attempts):
            return None
        waits = [self._reopens_in(a) for a in attempts if a.error_code in FOR_A_WHILE]
        return max(min(waits), POLL_S) if waits else None

    def _reopens_in(self, attempt: Attempt) -> float:
        if attempt.error_code == "circuit_open":
            return self._guard.admits_again_in(attempt.provider) if self._guard else 0.0
        return self._limiter.free_in(attempt.provider) if self._limiter else 0.0

    async def _admit(self, name: str, provider: LLMProvider, call: Call, outcome: Dispatched) -> Admission | None:
        """Ask the breaker, the rate limit and the budget whether ``name`` may be called now; None: skip it
        (the skip written down). The breaker goes first: a refusal further on gives its probe slot back."""
        admission = self._guard.admit(name) if self._guard else Admission(True)
        if not admission.allowed:
            outcome.attempts.append(Attempt(name, "skipped", error_code="circuit_open", error=admission.reason))
            return None
        refusal = self._limiter.take(name) if self._limiter else None
        if refusal is None and call.spend is not None:
            code = "budget_exceeded"
            refusal = await call.spend.reserve(name, estimated_cost_usd(provider, call.prompt))
        else:
            code = "rate_limited"
        if refusal is not None:
            self._report(name, None, admission)
            outcome.attempts.append(Attempt(name, "skipped", error_code=code, error=refusal))
            return None
        return admission

    async def _try_provider(
        self, name: str, entry: ChainEntry, provider: LLMProvider, admission: Admission, call: Call, priority: int,
        outcome: Dispatched,
    ) -> bool:
        """Call one provider, retrying as its policy (and its guards) allow; True when the dispatch is over.

        Called admitted (its cost reserved); every call ends in one report to the breaker and one
        settlement or release of the reservation.
        """
        retries = 0
        while True:
            left = call.deadline - self.clock()
            if left <= 0:
                await self._ended(name, call, None, admission, cost_usd=None)  # admitted, never called
                outcome.attempts.append(Attempt(name, "skipped", error_code="deadline_exceeded",
                                                error="no time left before the request's deadline"))
                return False
            started = self.clock()
            timeout: float | None = None  # set once a bulkhead slot is held
            try:
                # the wait for a bulkhead slot is bounded by the request's deadline, not by the provider's
                # timeout: a provider is timed on its own calls only
                async with asyncio.timeout(left), _slot(entry.bulkhead, priority):
                    timeout = min(call.deadline - self.clock(), entry.timeout_s or left)
                    async with asyncio.timeout(timeout):
                        generation = await call.run(provider, timeout)
            except TimeoutError:
                if timeout is None:
                    await self._ended(name, call, None, admission, cost_usd=None)  # never called
                    outcome.attempts.append(Attempt(name, "skipped", error_code="deadline_exceeded",
                                                    error="the deadline passed while waiting for a free slot"))
                    return False
                error: ProviderError = ProviderTimeout(f"no answer within {timeout:.1f}s", provider=name)
            except ProviderError as exc:
                error = exc
            except BaseException:  # cancelled (a drain), fenced: the call says nothing of the provider
                # and its reservation stays: the request is delivered again and its reserve books that
                # one at its estimate first (it may be paid); nothing is written to a table while fenced
                self._report(name, None, admission)
                raise
            else:
                cost = provider.estimate_cost(generation.prompt_tokens, generation.completion_tokens)
                await self._ended(name, call, True, admission, cost_usd=cost)
                outcome.attempts.append(Attempt(name, "ok", _ms(self.clock() - started)))
                outcome.generation, outcome.provider, outcome.cost_usd = generation, name, cost
                return True
            kind = "timeout" if isinstance(error, ProviderTimeout) else "error"
            outcome.attempts.append(Attempt(name, kind, _ms(self.clock() - started), error.code, str(error)))
            # a timed-out call may have been served (and billed): its estimate is booked, never released
            await self._ended(name, call, health_outcome(error), admission,
                              cost_usd=call.estimate(provider) if kind == "timeout" else None)
            if error.code == "rate_limited" and self._limiter:
                self._limiter.throttled(name, error.retry_after_s)
            if not error.retriable and not error.next_provider_may_help:
                outcome.error_code, outcome.error_message = error.code, str(error)
                return True
            wait = entry.retry.wait_before_retry(error, retries_done=retries, rng=self._rng,
                                                 time_left_s=call.deadline - self.clock())
            if wait is None:
                return False
            await call.wait(wait)
            retries += 1
            admission = await self._admit(name, provider, call, outcome)
            if admission is None:  # the breaker opened, the rate or the budget ran out meanwhile
                return False

    async def _ended(self, name: str, call: Call, ok: bool | None, admission: Admission, *,
                     cost_usd: float | None) -> None:
        """One call is over: its breaker report, and its reservation settled (at ``cost_usd``) or released."""
        self._report(name, ok, admission)
        if call.spend is not None:
            await (call.spend.release(name) if cost_usd is None else call.spend.settle(name, cost_usd))

    def _report(self, name: str, ok: bool | None, admission: Admission) -> None:
        """Every admission ends in exactly one report, so a half-open probe never keeps its slot for ever."""
        if self._guard:
            self._guard.record(name, ok, probe=admission.probe)


def _slot(bulkhead: PriorityBulkhead | None, priority: int) -> AbstractAsyncContextManager[None]:
    return bulkhead.slot(priority) if bulkhead else nullcontext()


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
