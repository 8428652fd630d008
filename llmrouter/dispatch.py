"""Dispatch: run a request down its provider chain until one answers.

No Kafka and no Faust here: the dispatcher gets providers, a plan and a clock,
and returns a :class:`Dispatched` with every attempt written down. What to do
with the outcome (result topic, DLQ, tables) is the agent's business.

A provider that is not configured is skipped with its reason; a provider
error that a retry could help moves on to the next provider; one that no
provider could help (a bad request) ends the chain at once. The request's
deadline bounds every call, the wait for the provider's bulkhead included;
the most urgent request waiting for a bulkhead gets the next free slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from llmrouter.bulkhead import PriorityBulkhead
from llmrouter.errors import MalformedReply, ProviderError, ProviderTimeout
from llmrouter.providers.base import Generation, LLMProvider, Prompt

OnDelta = Callable[[int, str, bool, str], Awaitable[None]]  # (seq, delta, final, provider)


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


class Dispatcher:
    """Tries providers in order, within the request's deadline."""

    def __init__(
        self,
        providers: Mapping[str, LLMProvider | Unavailable],
        *,
        timeouts_s: Mapping[str, float],
        bulkheads: Mapping[str, PriorityBulkhead] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._timeouts_s = timeouts_s
        self._bulkheads = bulkheads or {}
        self._clock = clock

    async def dispatch(
        self, prompt: Prompt, plan: Sequence[str], *, time_left_s: float, priority: int = 2,
        on_delta: OnDelta | None = None,
    ) -> Dispatched:
        """Try ``plan`` in order; ``priority`` (0 = critical) orders the wait for a provider's bulkhead."""
        outcome = Dispatched()
        deadline = self._clock() + time_left_s
        seq = 0
        for name in plan:
            provider = self._providers.get(name)
            if provider is None or isinstance(provider, Unavailable):
                reason = provider.reason if provider else "not registered"
                outcome.attempts.append(Attempt(name, "skipped", error_code="provider_unavailable", error=reason))
                continue
            left = deadline - self._clock()
            if left <= 0:
                outcome.attempts.append(Attempt(name, "skipped", error_code="deadline_exceeded",
                                                error="no time left before the request's deadline"))
                break
            started = self._clock()
            try:
                timeout = min(left, self._timeouts_s.get(name, left))
                async with asyncio.timeout(timeout), self._slot(name, priority):
                    if on_delta is None:
                        generation = await provider.generate(prompt)
                    else:
                        generation, seq = await _stream(provider, prompt, on_delta, seq)
            except TimeoutError:
                outcome.attempts.append(Attempt(name, "timeout", _ms(self._clock() - started), "provider_timeout",
                                                f"no answer within {timeout:.1f}s"))
                continue
            except ProviderError as exc:
                kind = "timeout" if isinstance(exc, ProviderTimeout) else "error"
                outcome.attempts.append(Attempt(name, kind, _ms(self._clock() - started), exc.code, str(exc)))
                if exc.retriable:
                    continue
                outcome.error_code, outcome.error_message = exc.code, str(exc)
                return outcome
            outcome.attempts.append(Attempt(name, "ok", _ms(self._clock() - started)))
            outcome.generation = generation
            outcome.provider = name
            outcome.cost_usd = provider.estimate_cost(generation.prompt_tokens, generation.completion_tokens)
            return outcome
        outcome.error_code = "all_providers_unavailable"
        if outcome.attempts:
            tried = "; ".join(f"{a.provider}: {a.error}" for a in outcome.attempts)
            outcome.error_message = f"every provider in the chain was skipped or failed ({tried})"
        else:
            outcome.error_message = "no provider in the chain may serve this request"
        return outcome


    def _slot(self, name: str, priority: int) -> AbstractAsyncContextManager[None]:
        bulkhead = self._bulkheads.get(name)
        return bulkhead.slot(priority) if bulkhead else nullcontext()


async def _stream(provider: LLMProvider, prompt: Prompt, on_delta: OnDelta, seq: int) -> tuple[Generation, int]:
    final: Generation | None = None
    async for piece in provider.stream(prompt):
        if piece.final is not None:
            final = piece.final
        await on_delta(seq, piece.delta, piece.final is not None, provider.name)
        seq += 1
    if final is None:
        raise MalformedReply(f"{provider.name} ended its stream without a final piece", provider=provider.name)
    return final, seq


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
