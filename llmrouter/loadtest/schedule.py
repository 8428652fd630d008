"""When the load test sends: an open loop at a rate or a closed loop at a concurrency.

Pure: no clock, no I/O. Times are seconds from the start of a run.

* **Open loop** (:class:`OpenLoop`): request *i* is due at a time fixed in
  advance (``i / rate``, or Poisson arrivals at that mean rate), whatever
  the system under test does. Latency is counted from that *due* time, so a
  stalled router, or a load generator that falls behind, shows up in the
  figures instead of quietly sending less (no coordinated omission).
* **Closed loop** (:class:`ClosedLoop`): ``concurrency`` requests are
  outstanding at any time; the next one is sent when an answer frees a slot.
  Latency is counted from the actual send. A request unanswered for
  ``give_up_s`` frees its slot (it is judged lost at the end if still
  unanswered), so a lost request cannot stall the loop for good.

Both stop at :class:`Bounds`: a count, a duration, or whichever comes first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from llmrouter.errors import ConfigError

ARRIVALS = ("uniform", "poisson")


@dataclass(frozen=True)
class Bounds:
    """How much to send: at most ``count`` requests, only within ``duration_s`` seconds; at least one is set."""

    count: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.count is None and self.duration_s is None:
            raise ConfigError("a load test needs --count or --duration (or both) so that it stops by itself")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"--count must be at least 1, not {self.count}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError(f"--duration must be more than 0 seconds, not {self.duration_s:g}")

    def allows(self, sent: int, elapsed_s: float) -> bool:
        """Whether one more request may be sent after ``sent`` of them, ``elapsed_s`` into the run."""
        if self.count is not None and sent >= self.count:
            return False
        return self.duration_s is None or elapsed_s < self.duration_s


@dataclass(frozen=True)
class OpenLoop:
    """Requests due at a mean rate of ``rate_rps``: evenly spaced (``uniform``) or Poisson arrivals."""

    rate_rps: float
    arrivals: Literal["uniform", "poisson"] = "uniform"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rate_rps > 0:
            raise ConfigError(f"--rate must be more than 0 requests per second, not {self.rate_rps:g}")
        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"--arrivals must be one of {', '.join(ARRIVALS)}, not {self.arrivals!r}")

    def due_times(self, bounds: Bounds) -> Iterator[float]:
        """The due time of each request, in order, as many as ``bounds`` allow."""
        rng = random.Random(self.seed)
        due, sent = 0.0, 0
        while bounds.allows(sent, due):
            yield due
            sent += 1
            due = sent / self.rate_rps if self.arrivals == "uniform" else due + rng.expovariate(self.rate_rps)

    def expected_count(self, bounds: Bounds) -> int:
        """How many requests a run will send (the mean, for Poisson arrivals): for a progress bar."""
        by_time = math.ceil(bounds.duration_s * self.rate_rps) if bounds.duration_s is not None else None
        return min(n for n in (bounds.count, by_time) if n is not None)

    def describe(self) -> str:
        return f"open loop at {self.rate_rps:g} req/s ({self.arrivals} arrivals)"


@dataclass(frozen=True)
class ClosedLoop:
    """``concurrency`` requests outstanding; an unanswered one frees its slot after ``give_up_s``."""

    concurrency: int
    give_up_s: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, not {self.concurrency}")
        if not self.give_up_s > 0:
            raise ConfigError(f"the closed loop's give-up time must be more than 0 s, not {self.give_up_s:g}")

    def room(self, outstanding_sent_at: list[float], now_s: float) -> int:
        """How many requests may be sent now, given the send times of those still unanswered."""
        holding = sum(1 for sent_at in outstanding_sent_at if now_s - sent_at < self.give_up_s)
        return max(0, self.concurrency - holding)

    def expected_count(self, bounds: Bounds) -> int | None:
        """The count when it bounds the run; a duration alone says nothing in advance."""
        return bounds.count

    def describe(self) -> str:
        return f"closed loop at concurrency {self.concurrency}"


Schedule = OpenLoop | ClosedLoop
