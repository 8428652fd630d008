"""What a load test run saw, and the figures drawn from it.

Pure: no clock (times come in as arguments, seconds on one monotonic clock),
no I/O. A :class:`Tally` records, by sequence number, when each request was
due and sent, and each result that came back; :meth:`Tally.summary` turns
that into a :class:`Summary`:

* **latency** from the request's origin to the arrival of its first result:
  the *due* time in an open loop (so a stall or a late sender is counted,
  not omitted), the actual send in a closed loop; p50/p90/p95/p99/max over
  every answered request, per priority and per path (the cache level
  ``l1``/``l2``/``l3`` when the route is ``cache``, else the route:
  ``local``, ``cloud``, ``none``);
* **errors**: results whose status is not ``ok``, by ``status/error_code``;
  sends the broker refused, by reason;
* **lost**: sent (not refused) and no result by the end of the drain;
* **duplicates**: results beyond the first for one request, not counting
  those that carry the replay header (the router marks a re-emitted stored
  answer that way; they are counted apart, as **replays**);
* **throughput**: requests sent per second over the send window, answers
  per second from the first due time to the last answer.

Per-request state lives in flat arrays indexed by sequence number, so a run
of millions of requests stays small in memory.
"""

from __future__ import annotations

import math

from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

CACHE_LEVELS = ("l1", "l2", "l3")
_NOT_SENT, _SENT, _REFUSED = 0, 1, 2
_MAX_COUNT = 255  # result counters are bytes; a request answered 255 times is counted as 255


def path_of(route: str, cache_level: str) -> str:
    """The path that answered: the cache level for a cache hit, else the route (local | cloud | none)."""
    if route == "cache":
        return cache_level if cache_level in CACHE_LEVELS else "cache"
    return route or "none"


@dataclass(frozen=True)
class Answer:
    """What one result says about the request it answers."""

    status: str = "ok"
    route: str = "none"
    cache_level: str = "none"
    error_code: str | None = None
    replay: bool = False

    @property
    def path(self) -> str:
        return path_of(self.route, self.cache_level)


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles in milliseconds (numpy's linear interpolation) over ``count`` requests."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: array | list[float]) -> LatencyStats | None:
        """The figures of latencies given in seconds; None when there are none."""
        if len(seconds) == 0:
            return None
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return cls(count=len(ms), mean_ms=float(ms.mean()), p50_ms=float(p50), p90_ms=float(p90),
                   p95_ms=float(p95), p99_ms=float(p99), max_ms=float(ms.max()))


@dataclass(frozen=True)
class Summary:
    """The figures of one run (the router's, or the echo baseline's)."""

    label: str
    latency_from: str  # "due" (open loop) or "send" (closed loop)
    sent: int
    refused: int
    answered: int
    lost: int
    duplicates: int
    replays: int
    strays: int  # results naming a request of this run that was never sent
    errors: dict[str, int]
    send_errors: dict[str, int]
    send_window_s: float
    elapsed_s: float
    sent_rps: float
    answered_rps: float
    latency: LatencyStats | None
    by_priority: dict[str, LatencyStats]
    by_path: dict[str, LatencyStats]
    send_lag: LatencyStats | None  # open loop: how late the sender was against the schedule
    ack_lag: LatencyStats | None = None  # from each send to the broker's acknowledgement of it
    lost_sample: list[int] = field(default_factory=list)  # sequence numbers of a few lost requests

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + sum(self.send_errors.values())

    def problems(self) -> list[str]:
        """What a CI smoke run fails on: anything lost, duplicated, stray, refused or answered with an error."""
        found = []
        if self.lost:
            found.append(f"{self.label}: {self.lost} request(s) lost (sent, never answered), e.g. seq "
                         f"{', '.join(map(str, self.lost_sample))}")
        if self.duplicates:
            found.append(f"{self.label}: {self.duplicates} duplicate result(s) without the replay header")
        if self.strays:
            found.append(f"{self.label}: {self.strays} result(s) for requests this run never sent")
        if self.errors:
            found.append(f"{self.label}: error results {_counts(self.errors)}")
        if self.send_errors:
            found.append(f"{self.label}: sends refused {_counts(self.send_errors)}")
        return found

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{key} x{n}" for key, n in sorted(counter.items()))


class Tally:
    """Everything one run saw, by the requests' sequence numbers (0, 1, 2, ...).

    ``from_due``: latency counts from the due time (open loop), else from the send.
    """

    def __init__(self, label: str, *, from_due: bool) -> None:
        self.label = label
        self.from_due = from_due
        self._state = bytearray()
        self._due = array("d")
        self._sent_at = array("d")
        self._acked_at = array("d")  # NaN until the broker acknowledged the send
        self._priority: list[str] = []
        self._results = bytearray()  # results without the replay header, per request
        self._replayed = bytearray()  # results with it
        self._latency = array("d")
        self._by_priority: dict[str, array] = {}
        self._by_path: dict[str, array] = {}
        self._recent: list[float] = []
        self.errors: Counter[str] = Counter()
        self._refused: dict[int, str] = {}  # seq -> why the broker refused its send
        self.strays = 0
        self.answered = 0
        self.first_due_s: float | None = None
        self.last_sent_s: float | None = None
        self.last_answer_s: float | None = None
        self._first_sent_s: float | None = None

    @property
    def sent(self) -> int:
        return len(self._state)

    @property
    def refused(self) -> int:
        return len(self._refused)

    @property
    def send_errors(self) -> Counter[str]:
        """Refused sends by reason."""
        return Counter(self._refused.values())

    @property
    def outstanding(self) -> int:
        """Sent, not refused, not yet answered."""
        return self.sent - self.refused - self.answered

    def record_send(self, seq: int, priority: str, *, due_s: float, sent_s: float) -> None:
        """Request ``seq`` (the next in order) was handed to the producer at ``sent_s``; it was due at ``due_s``."""
        if seq != len(self._state):
            raise ValueError(f"sends are recorded in order: expected seq {len(self._state)}, got {seq}")
        self._state.append(_SENT)
        self._due.append(due_s)
        self._sent_at.append(sent_s)
        self._acked_at.append(math.nan)
        self._priority.append(priority)
        self._results.append(0)
        self._replayed.append(0)
        if self.first_due_s is None:
            self.first_due_s, self._first_sent_s = due_s, sent_s
        self.last_sent_s = sent_s

    def record_acked(self, seq: int, at_s: float) -> None:
        """The broker acknowledged request ``seq``'s send at ``at_s``."""
        self._acked_at[seq] = at_s

    def record_refused(self, seq: int, reason: str) -> None:
        """The broker refused request ``seq``'s send (it will not be answered)."""
        if self._state[seq] == _SENT:
            self._state[seq] = _REFUSED
            self._refused[seq] = reason

    def record_result(self, seq: int, at_s: float, answer: Answer) -> bool:
        """A result for request ``seq`` arrived at ``at_s``; True when it is the request's first answer."""
        if seq >= len(self._state) or self._state[seq] == _NOT_SENT:
            self.strays += 1
            return False
        first = self._results[seq] == 0 and self._replayed[seq] == 0
        counter = self._replayed if answer.replay else self._results
        counter[seq] = min(counter[seq] + 1, _MAX_COUNT)
        if not first:
            return False
        if self._state[seq] == _REFUSED:  # a send reported failed reached the broker after all: answered
            self._state[seq] = _SENT
            del self._refused[seq]
        self.answered += 1
        self.last_answer_s = at_s
        latency = at_s - (self._due[seq] if self.from_due else self._sent_at[seq])
        self._latency.append(latency)
        self._by_priority.setdefault(self._priority[seq], array("d")).append(latency)
        self._by_path.setdefault(answer.path, array("d")).append(latency)
        self._recent.append(latency)
        if answer.status != "ok":
            self.errors[f"{answer.status}/{answer.error_code or '-'}"] += 1
        return True

    def take_recent(self) -> list[float]:
        """The latencies (seconds) recorded since the last call: for a progress line."""
        recent, self._recent = self._recent, []
        return recent

    def p95_so_far_ms(self) -> float | None:
        """p95 of every latency recorded so far, in milliseconds (None before the first answer)."""
        if not self._latency:
            return None
        return float(np.percentile(np.frombuffer(self._latency, dtype=np.float64), 95)) * 1000.0

    def latencies_by_path(self) -> dict[str, np.ndarray]:
        """Every answered request's latency in milliseconds, by path (for a plot)."""
        return {path: np.asarray(values) * 1000.0 for path, values in sorted(self._by_path.items())}

    def summary(self) -> Summary:
        """The figures of the run as it stands (call it after the drain)."""
        state = np.frombuffer(bytes(self._state), dtype=np.uint8)
        answered_any = (np.frombuffer(bytes(self._results), dtype=np.uint8) > 0) | (
            np.frombuffer(bytes(self._replayed), dtype=np.uint8) > 0)
        lost_mask = (state == _SENT) & ~answered_any
        extra = np.frombuffer(bytes(self._results), dtype=np.uint8).astype(np.int64) - 1
        send_window_s = (self.last_sent_s - self._first_sent_s) if self.sent > 1 else 0.0
        elapsed_s = (self.last_answer_s - self.first_due_s) if self.answered else 0.0
        lag = (np.asarray(self._sent_at) - np.asarray(self._due)) if self.from_due and self.sent else None
        ack = np.asarray(self._acked_at) - np.asarray(self._sent_at)
        ack = ack[~np.isnan(ack)]
        return Summary(
            label=self.label, latency_from="due" if self.from_due else "send", sent=self.sent,
            refused=self.refused, answered=self.answered, lost=int(lost_mask.sum()),
            duplicates=int(extra[extra > 0].sum()), replays=int(sum(self._replayed)), strays=self.strays,
            errors=dict(self.errors), send_errors=dict(self.send_errors), send_window_s=send_window_s,
            elapsed_s=elapsed_s, sent_rps=_rate(self.sent, send_window_s),
            answered_rps=_rate(self.answered, elapsed_s), latency=LatencyStats.of(self._latency),
            by_priority={p: LatencyStats.of(v) for p, v in sorted(self._by_priority.items())},
            by_path={p: LatencyStats.of(v) for p, v in sorted(self._by_path.items())},
            send_lag=LatencyStats.of(lag) if lag is not None else None,
            ack_lag=LatencyStats.of(ack) if len(ack) else None,
            lost_sample=[int(s) for s in np.flatnonzero(lost_mask)[:5]])


def _rate(count: int, span_s: float) -> float:
    """Events per second when ``count`` events span ``span_s`` seconds (count - 1 intervals)."""
    return (count - 1) / span_s if count > 1 and span_s > 0 else 0.0
