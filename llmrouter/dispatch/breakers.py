"""One circuit breaker per provider for this worker: the dispatcher's :class:`~llmrouter.dispatch.dispatcher.Guard`.

Each provider's :class:`~llmrouter.core.breaker.Breaker` is made on its first
call, with the worker's :class:`~llmrouter.core.breaker.BreakerConfig`; every
state change is handed to ``on_transition`` (the app publishes it on
``llm.events``). Only failures that say something about the provider's
health count against it: a 429 is the rate limiter's business, and a request
the provider refused as bad, too long or a full local queue say nothing
about the provider being down.

Every outcome that counts also goes into ``reports`` (an
:class:`~llmrouter.core.provider_state.OutcomeBuffer`), which the app sends to
the provider's owner; :meth:`LocalBreakers.follow` is how the owner's view
comes back: a provider the owner has opened is opened here too, until the
owner's cool-down ends, even if this worker's own calls saw nothing wrong
(llmrouter.core.provider_state).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llmrouter.core.breaker import Admission, Breaker, BreakerConfig, Transition
from llmrouter.core.provider_state import OutcomeBuffer
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
        self.reports = OutcomeBuffer()

    def admit(self, provider: str) -> Admission:
        admission, moved = self._breaker(provider).admit(self._clock())
        self._announce(provider, moved)
        return admission

    def record(self, provider: str, ok: bool | None, *, probe: bool) -> None:
        self.reports.add(provider, ok)
        self._announce(provider, self._breaker(provider).record(self._clock(), ok, probe=probe))

    def follow(self, provider: str, open_for_s: float, reason: str) -> None:
        """The provider's owner has it open for ``open_for_s`` more: open it here too, for as long."""
        now = self._clock()
        self._announce(provider, self._breaker(provider).trip(now, now + open_for_s, reason))

    def admits_again_in(self, provider: str) -> float:
        return self._breaker(provider).admits_again_in(self._clock())

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
