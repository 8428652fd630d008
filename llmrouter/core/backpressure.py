"""Backpressure by priority (F004, DESIGN.md "Priority"): when to pause a priority and when to resume it.

Pure: the caller samples the load and passes the time; :meth:`PriorityBackpressure.observe`
answers with at most one :class:`Change`. The runtime acts on it
(:mod:`llmrouter.runtime.backpressure`).

**The signal.** Provider capacity is where priorities compete: each priority has
its own intake and answer lanes, but all of them share the providers' bulkheads
and rate limits. A sample (:class:`Load`) holds, per priority, the answer jobs
waiting for a provider slot (the bulkheads' queues), and whether every usable
provider of the chain is out of rate-limit tokens.

**The rule.** A priority is paused while *more urgent* work waits for capacity
that its own calls would take: the pressure against a priority is the number of
more urgent jobs waiting for a slot. The bulkhead already gives the next free
slot to the most urgent waiter, but a slot freed while nobody more urgent
happens to wait goes to the lower priority, and the next critical request then
waits for a whole call to end; paused, the lower priority leaves those slots to
the urgent work, and its backlog waits in Kafka instead of in the worker. A
flood of one priority alone is not paused: nothing more urgent needs the
capacity, and pausing it would only leave the provider idle. When the rate
limits are spent along the whole chain, every priority is in the way of the
more urgent ones, so the pressure counts as high for all of them.

* Pause the lowest flowing priority (``low``, then ``normal``, then ``high``;
  never ``critical``) when its pressure has been at least ``pause_waiting``
  (or the tokens out) in every sample for ``pause_after_s``; then the next one
  after another ``pause_after_s``, if the pressure stays.
* Resume the most urgent paused priority when its pressure has been at most
  ``resume_waiting`` (and tokens left) in every sample for its resume wait;
  then the next one, one at a time, in the reverse order.

Hysteresis: the two thresholds (``resume_waiting < pause_waiting``), the two
dwell times, and a resume wait that doubles, up to ``max_resume_after_s``,
each time a priority must be paused again soon after it was resumed (within
its resume wait): under a sustained overload a priority is let in for short
spells less and less often instead of flapping every few seconds. It falls
back to ``resume_after_s`` once a pause follows a calm longer than that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PRIORITIES = ("critical", "high", "normal", "low")  # most urgent first (as llmrouter.wire.contract.PRIORITIES)
PAUSABLE = ("low", "normal", "high")  # the order they are paused in; critical never is


@dataclass(frozen=True, kw_only=True)
class BackpressureConfig:
    pause_waiting: int = 1  # more urgent jobs waiting for a slot at which a priority is in the way
    resume_waiting: int = 0  # at most this many, and it is out of the way again
    pause_after_s: float = 1.0  # the pressure held this long before a pause (and between pauses)
    resume_after_s: float = 2.0  # calm this long before a resume (and between resumes)
    max_resume_after_s: float = 30.0  # the resume wait doubles on a relapse, up to this
    deepest: str = "high"  # the most urgent priority that may be paused

    def __post_init__(self) -> None:
        checks = [
            (self.pause_waiting >= 1, "pause_waiting must be at least 1"),
            (0 <= self.resume_waiting < self.pause_waiting, "resume_waiting must be at least 0 and less than "
                                                            "pause_waiting (the band between them is the hysteresis)"),
            (self.pause_after_s >= 0, "pause_after_s must be at least 0"),
            (self.resume_after_s > 0, "resume_after_s must be more than 0"),
            (self.max_resume_after_s >= self.resume_after_s, "max_resume_after_s must be at least resume_after_s"),
            (self.deepest in PAUSABLE, f"deepest must be one of {', '.join(PAUSABLE)} (critical is never paused)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"backpressure: {message}")

    @property
    def pausable(self) -> tuple[str, ...]:
        """The priorities that may be paused, in the order they are."""
        return PAUSABLE[:PAUSABLE.index(self.deepest) + 1]


@dataclass(frozen=True)
class Load:
    """One sample of what waits for provider capacity."""

    waiting: Mapping[str, int]  # answer jobs waiting for a provider slot, by priority
    tokens_out: bool = False  # every usable provider of the chain is out of rate-limit tokens

    def pressure_against(self, priority: str) -> int:
        """The jobs more urgent than ``priority`` waiting for a slot."""
        more_urgent = PRIORITIES[:PRIORITIES.index(priority)]
        return sum(self.waiting.get(p, 0) for p in more_urgent)


@dataclass(frozen=True)
class Change:
    """A priority paused or resumed, and why (for the log, the metric and llm.events)."""

    priority: str
    paused: bool
    reason: str
    pressure: int
    at_s: float


class PriorityBackpressure:
    """Which priorities are paused now; fed one :class:`Load` per sample."""

    def __init__(self, config: BackpressureConfig = BackpressureConfig()) -> None:
        self.config = config
        self.paused: list[str] = []  # in the order they were paused (the last one resumes first)
        self.paused_at_s: dict[str, float] = {}
        self._pressed_since: float | None = None  # the pause candidate's pressure has held since
        self._calm_since: float | None = None  # the resume candidate's calm has held since
        self._resume_wait_s = {p: config.resume_after_s for p in PAUSABLE}
        self._resumed_at_s: dict[str, float] = {}

    def is_paused(self, priority: str) -> bool:
        return priority in self.paused

    def resume_wait_s(self, priority: str) -> float:
        """How long ``priority`` must be out of the way before it is resumed (it grows on relapses)."""
        return self._resume_wait_s[priority]

    def observe(self, load: Load, now_s: float) -> Change | None:
        """Take one sample; the priority paused or resumed because of it, if any."""
        to_pause = self._next_to_pause()
        to_resume = self.paused[-1] if self.paused else None
        pressed = to_pause is not None and self._pressed(load, to_pause)
        calm = to_resume is not None and self._calm(load, to_resume)
        self._pressed_since = _since(self._pressed_since, pressed, now_s)
        self._calm_since = _since(self._calm_since, calm, now_s)
        if pressed and now_s - self._pressed_since >= self.config.pause_after_s:
            return self._pause(to_pause, load, now_s)
        if calm and now_s - self._calm_since >= self._resume_wait_s[to_resume]:
            return self._resume(to_resume, load, now_s)
        return None

    def _next_to_pause(self) -> str | None:
        flowing = [p for p in self.config.pausable if p not in self.paused]
        return flowing[0] if flowing else None

    def _pressed(self, load: Load, priority: str) -> bool:
        return load.tokens_out or load.pressure_against(priority) >= self.config.pause_waiting

    def _calm(self, load: Load, priority: str) -> bool:
        return not load.tokens_out and load.pressure_against(priority) <= self.config.resume_waiting

    def _pause(self, priority: str, load: Load, now_s: float) -> Change:
        resumed = self._resumed_at_s.get(priority)
        wait = self._resume_wait_s[priority]
        if resumed is not None and now_s - resumed < wait:  # a relapse: let it in less often
            self._resume_wait_s[priority] = min(self.config.max_resume_after_s, wait * 2)
        else:
            self._resume_wait_s[priority] = self.config.resume_after_s
        self.paused.append(priority)
        self.paused_at_s[priority] = now_s
        self._pressed_since, self._calm_since = now_s, None  # the next pause, if the pressure holds, a dwell later
        pressure = load.pressure_against(priority)
        reason = ("every usable provider of the chain is out of rate-limit tokens" if load.tokens_out else
                  f"{pressure} more urgent request(s) waited for a provider slot for "
                  f"{self.config.pause_after_s:g} s")
        return Change(priority, True, reason, pressure, now_s)

    def _resume(self, priority: str, load: Load, now_s: float) -> Change:
        self.paused.remove(priority)
        self.paused_at_s.pop(priority, None)
        self._resumed_at_s[priority] = now_s
        self._pressed_since, self._calm_since = None, now_s  # the next resume, if the calm holds, a wait later
        reason = f"no more urgent request waited for a provider slot for {self._resume_wait_s[priority]:g} s"
        return Change(priority, False, reason, load.pressure_against(priority), now_s)


def chain_out_of_tokens(usable: Iterable[str], spent: Mapping[str, bool]) -> bool:
    """True when every usable provider of the chain is out of rate-limit tokens (``spent``: provider -> no
    token now, or held off by a 429). A provider not in ``spent`` has no limit, so the chain has room there;
    an empty chain is an outage, the breakers' and the dead-letter topic's business, not backpressure."""
    usable = list(usable)
    return bool(usable) and all(spent.get(name, False) for name in usable)


def _since(since: float | None, holds: bool, now_s: float) -> float | None:
    if not holds:
        return None
    return now_s if since is None else since
