"""One circuit breaker per provider for this worker: the dispatcher's :class:`~llmrouter.dispatch.Guard`.

Each provider's :class:`~llmrouter.core.breaker.Breaker` is made on its first
call, with the worker's :class:`~llmrouter.core.breaker.BreakerConfig`; every
state change is handed to ``on_transition`` (the app publishes it on
``llm.events``). Only failures that say something about the provider's
health count against it: a 429 is the rate limiter's business, and a request
the provider refused as bad, too long or a full local queue say nothing
about the provider being down.

The breakers live in this worker's memory: every worker learns on its own
that a provider is down (a few calls each). Sharing them through a table
with one owner per provider is the next step (docs/resilience.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llmrouter.core.breaker import Admission, Breaker, BreakerConfig, Transition
from llmrouter.errors import ProviderError

NOT_HEALTH_FAILURES = frozenset({"rate_limited", "bad_request", "context_too_long", "overloaded"})


def health_outcome(error: ProviderError) -> bool | None:
    """What ``error`` says of the provider's health: False (a failure for its breaker), or None (nothing)."""
    return None if error.code in NOT_HEALTH_FAILURES else False


class LocalBreakers:
    def __init__(self, config: BreakerConfig, *, clock: Callable[[], float] = time.monotonic,
                 on_transition: Callable[[str, Transition], None] | None = None) -> None:
        self._config = config
        self._clock = clock
        self._on_transition = on_transition
        self._breakers: dict[str, Breaker] = {}

    def admit(self, provider: str) -> Admission:
        admission, moved = self._breaker(provider).admit(self._clock())
        self._announce(provider, moved)
        return admission

    def record(self, provider: str, ok: bool | None, *, probe: bool) -> None:
        self._announce(provider, self._breaker(provider).record(self._clock(), ok, probe=probe))

    def states(self) -> dict[str, str]:
        """Each provider's breaker state (for /providers/ and metrics)."""
        return {name: breaker.state.value for name, breaker in sorted(self._breakers.items())}

    def _breaker(self, provider: str) -> Breaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            breaker = self._breakers[provider] = Breaker(self._config, now_s=self._clock())
        return breaker

    def _announce(self, provider: str, moved: Transition | None) -> None:
        if moved is not None and self._on_transition is not None:
            self._on_transition(provider, moved)
