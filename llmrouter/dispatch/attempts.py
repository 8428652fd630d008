"""What a dispatch works with and writes down: the chain's entries, the guards it asks before each call, and
every attempt of a request's trip down the chain (:class:`Dispatched`). Records and protocols only, no I/O."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmrouter.core.breaker import Admission
from llmrouter.core.retry import NO_RETRY, RetryPolicy
from llmrouter.dispatch.bulkhead import PriorityBulkhead
from llmrouter.providers.base import Generation, LLMProvider, Prompt

OnDelta = Callable[[int, str, bool, str, bool], Awaitable[None]]  # (seq, delta, final, provider, restart)


class Guard(Protocol):
    """A circuit breaker per provider: asked before each call (a retry too), told each call's outcome."""

    def admit(self, provider: str) -> Admission: ...

    def record(self, provider: str, ok: bool | None, *, probe: bool) -> None: ...

    def admits_again_in(self, provider: str) -> float: ...  # seconds until a refused call may be admitted


class Limiter(Protocol):
    """A rate limit per provider: a token taken before each call, told of each 429."""

    def take(self, provider: str) -> str | None: ...  # the reason to skip the provider, or None

    def throttled(self, provider: str, retry_after_s: float | None) -> None: ...

    def free_in(self, provider: str) -> float: ...  # seconds until a token is there


class Spend(Protocol):
    """One request's budgets: the estimated cost reserved before each paid call, the real cost settled after."""

    async def reserve(self, provider: str, estimate_usd: float) -> str | None: ...  # reason refused, or None

    async def settle(self, provider: str, cost_usd: float) -> None: ...

    async def release(self, provider: str) -> None: ...


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
