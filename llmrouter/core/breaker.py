"""A circuit breaker per provider (specification F003): pure, the clock passed in.

States and the legal moves between them::

    CLOSED ──(failure rate over the window, or N failures in a row)──► OPEN
    OPEN ──(cool-down over)──► HALF_OPEN
    HALF_OPEN ──(every probe ok)──► CLOSED, ramping back
    HALF_OPEN ──(a probe failed)──► OPEN, cool-down doubled (up to a cap)

CLOSED counts each call's outcome in a sliding time window; it opens on the
failure rate once the window holds at least ``min_calls``, or at once on
``consecutive_failures`` failures in a row (a provider that is plainly down
is not given ``min_calls`` chances). OPEN refuses every call until its
cool-down is over. HALF_OPEN lets ``half_open_probes`` calls through and
refuses the rest; when they all succeed the breaker closes, and for
``ramp_s`` after that it admits a growing share of calls (from
``1 / half_open_probes`` of them up to all), so a recovered provider gets its
traffic back gradually rather than all at once. The ramp admits calls by a
deterministic credit (each call earns the current share, an admission spends
one), so the same calls on the same state get the same answers.

A caller asks :meth:`Breaker.admit` before a call and reports :meth:`record`
after it. Each call that changes the state returns the :class:`Transition`
(to publish as an ``Event`` on ``llm.events``). :meth:`to_dict` and
:meth:`from_dict` carry the whole state (for a table).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any


POLL_S = 0.05  # how soon to ask again a breaker that refused for a reason with no known end


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_LEGAL = {
    State.CLOSED: {State.OPEN},
    State.OPEN: {State.HALF_OPEN},
    State.HALF_OPEN: {State.CLOSED, State.OPEN},
}


@dataclass(frozen=True, kw_only=True)
class BreakerConfig:
    """Thresholds, in the units named. Defaults follow common practice (resilience4j's, in seconds)."""

    window_s: float = 30.0  # outcomes older than this do not count
    min_calls: int = 10  # fewer calls in the window never open the breaker on the rate
    failure_rate: float = 0.5  # open at this share of failures or more
    consecutive_failures: int = 5  # open at once after this many failures in a row (0: off)
    cooldown_s: float = 5.0  # open this long before the first probes
    max_cooldown_s: float = 60.0  # each failed probe doubles the cool-down, up to this
    half_open_probes: int = 3  # calls let through while half-open
    ramp_s: float = 20.0  # after closing, the admitted share grows to 1 over this long (0: all at once)

    def __post_init__(self) -> None:
        checks = [
            (self.window_s > 0, "window_s must be more than 0"),
            (self.min_calls >= 1, "min_calls must be at least 1"),
            (0 < self.failure_rate <= 1, "failure_rate must be more than 0 and at most 1"),
            (self.consecutive_failures >= 0, "consecutive_failures must be 0 (off) or more"),
            (0 < self.cooldown_s <= self.max_cooldown_s, "cooldown_s must be more than 0 and at most max_cooldown_s"),
            (self.half_open_probes >= 1, "half_open_probes must be at least 1"),
            (self.ramp_s >= 0, "ramp_s must be 0 or more"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"breaker: {message}")


@dataclass(frozen=True)
class Transition:
    """A change of state, for the audit trail."""

    before: State
    after: State
    at_s: float
    reason: str


@dataclass(frozen=True)
class Admission:
    allowed: bool
    probe: bool = False  # a half-open probe: its outcome decides the state
    reason: str = ""  # why not, for the attempt record


class Breaker:
    def __init__(self, config: BreakerConfig, *, now_s: float = 0.0) -> None:
        self.config = config
        self.state = State.CLOSED
        self.since_s = now_s  # when the current state began
        self.cooldown_s = config.cooldown_s
        self._outcomes: deque[tuple[float, bool]] = deque()  # (at, ok) within the window, closed only
        self._failures_in_a_row = 0
        self._probes_out = 0  # half-open calls admitted, outcome not reported yet
        self._probes_ok = 0
        self._ramp_credit = 0.0  # during the ramp: the admitted share accumulated, less the calls admitted
        self._ramping = False  # closed after a recovery: the ramp applies

    # ---- asking ----

    def admit(self, now_s: float) -> tuple[Admission, Transition | None]:
        """May a call go to the provider now? Also returns the OPEN -> HALF_OPEN move when the cool-down ended."""
        moved = None
        if self.state is State.OPEN:
            if now_s - self.since_s < self.cooldown_s:
                left = self.cooldown_s - (now_s - self.since_s)
                return Admission(False, reason=f"circuit open for {left:.1f} s more"), None
            moved = self._move(State.HALF_OPEN, now_s, f"cool-down of {self.cooldown_s:g} s over")
        if self.state is State.HALF_OPEN:
            if self._probes_out + self._probes_ok >= self.config.half_open_probes:
                return Admission(False, reason="circuit half-open: its probes are out"), moved
            self._probes_out += 1
            return Admission(True, probe=True), moved
        share = self.ramp_share(now_s)
        if share >= 1.0:
            return Admission(True), moved
        self._ramp_credit += share  # each call earns its share; a whole one is spent on an admission
        if self._ramp_credit >= 1.0:
            self._ramp_credit -= 1.0
            return Admission(True), moved
        return Admission(False, reason=f"circuit ramping back: {share:.0%} of calls admitted"), moved

    def ramp_share(self, now_s: float) -> float:
        """The share of calls admitted while CLOSED (1 once the ramp after a recovery is over)."""
        elapsed = now_s - self.since_s
        if self.state is not State.CLOSED or not self._ramping or elapsed >= self.config.ramp_s:
            return 1.0
        floor = 1.0 / self.config.half_open_probes
        return floor + (1.0 - floor) * elapsed / self.config.ramp_s

    def tick(self, now_s: float) -> Transition | None:
        """OPEN -> HALF_OPEN once the cool-down is over, without admitting a call (for a breaker that is told
        outcomes but asked nothing: the owner of a provider's shared state)."""
        if self.state is State.OPEN and now_s - self.since_s >= self.cooldown_s:
            return self._move(State.HALF_OPEN, now_s, f"cool-down of {self.cooldown_s:g} s over")
        return None

    def admits_again_in(self, now_s: float) -> float:
        """How soon a refused call may be admitted: the rest of the cool-down while OPEN; otherwise ``POLL_S``
        (a half-open probe's answer or the ramp's next credit may come at any call)."""
        if self.state is State.OPEN:
            return max(0.0, self.since_s + self.cooldown_s - now_s)
        return POLL_S

    def open_until(self) -> float | None:
        """When the cool-down ends, while OPEN."""
        return self.since_s + self.cooldown_s if self.state is State.OPEN else None

    def trip(self, now_s: float, until_s: float, reason: str) -> Transition | None:
        """Open until ``until_s`` because another worker's calls showed the provider down (the shared state).

        An open breaker that would reopen earlier is held open longer; one open longer already is left be.
        """
        if until_s <= now_s:
            return None
        if self.state is State.OPEN:
            if self.since_s + self.cooldown_s < until_s:
                self.since_s, self.cooldown_s = now_s, until_s - now_s
            return None
        moved = self._move(State.OPEN, now_s, reason)
        self.cooldown_s = until_s - now_s
        return moved

    # ---- reporting ----

    def record(self, now_s: float, ok: bool | None, *, probe: bool = False) -> Transition | None:
        """The outcome of a call :meth:`admit` let through; the state change it causes, if any.

        ``ok`` None: the call says nothing about the provider's health (a 429, a request it refused as
        bad): it is not counted, and a probe's slot is given back for another call to probe with.
        """
        if self.state is State.HALF_OPEN and probe:
            self._probes_out = max(0, self._probes_out - 1)
            if ok is None:
                return None
            if not ok:
                self.cooldown_s = min(self.cooldown_s * 2, self.config.max_cooldown_s)
                return self._move(State.OPEN, now_s, f"a half-open probe failed; cool-down {self.cooldown_s:g} s")
            self._probes_ok += 1
            if self._probes_ok >= self.config.half_open_probes:
                self.cooldown_s = self.config.cooldown_s
                return self._move(State.CLOSED, now_s, f"{self._probes_ok} half-open probes succeeded")
            return None
        if self.state is not State.CLOSED or ok is None:
            return None  # not about health, or a call admitted before the breaker opened: too late to count
        self._outcomes.append((now_s, ok))
        self._forget_before(now_s - self.config.window_s)
        self._failures_in_a_row = 0 if ok else self._failures_in_a_row + 1
        limit = self.config.consecutive_failures
        if limit and self._failures_in_a_row >= limit:
            return self._move(State.OPEN, now_s, f"{self._failures_in_a_row} failures in a row")
        calls = len(self._outcomes)
        failures = sum(1 for _, good in self._outcomes if not good)
        if calls >= self.config.min_calls and failures / calls >= self.config.failure_rate:
            return self._move(State.OPEN, now_s, f"{failures} of {calls} calls failed in {self.config.window_s:g} s")
        return None

    def failure_rate(self, now_s: float) -> tuple[int, int]:
        """(failures, calls) in the window now."""
        self._forget_before(now_s - self.config.window_s)
        return sum(1 for _, good in self._outcomes if not good), len(self._outcomes)

    # ---- state ----

    def _move(self, to: State, now_s: float, reason: str) -> Transition:
        if to not in _LEGAL[self.state]:
            raise RuntimeError(f"illegal breaker transition {self.state.value} -> {to.value}")
        before, self.state, self.since_s = self.state, to, now_s
        self._outcomes.clear()
        self._failures_in_a_row = 0
        self._probes_out = self._probes_ok = 0
        self._ramp_credit = 0.0
        self._ramping = before is State.HALF_OPEN and to is State.CLOSED
        return Transition(before, to, now_s, reason)

    def _forget_before(self, cutoff_s: float) -> None:
        while self._outcomes and self._outcomes[0][0] < cutoff_s:
            self._outcomes.popleft()

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "since_s": self.since_s, "cooldown_s": self.cooldown_s,
                "outcomes": [[at, ok] for at, ok in self._outcomes], "failures_in_a_row": self._failures_in_a_row,
                "probes_out": self._probes_out, "probes_ok": self._probes_ok, "ramp_credit": self._ramp_credit,
                "ramping": self._ramping}

    @classmethod
    def from_dict(cls, config: BreakerConfig, data: dict[str, Any]) -> Breaker:
        breaker = cls(config, now_s=float(data["since_s"]))
        breaker.state = State(data["state"])
        breaker.cooldown_s = float(data["cooldown_s"])
        breaker._outcomes = deque((float(at), bool(ok)) for at, ok in data["outcomes"])
        breaker._failures_in_a_row = int(data["failures_in_a_row"])
        breaker._probes_out = int(data["probes_out"])
        breaker._probes_ok = int(data["probes_ok"])
        breaker._ramp_credit = float(data["ramp_credit"])
        breaker._ramping = bool(data["ramping"])
        return breaker
