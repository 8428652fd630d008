"""Windowed aggregates of outcomes (F025), what the alert rules read: pure.

Every outcome lands in the tumbling window (``size_ms`` long, one minute by
default) of the time it was known, under its *subjects*: a request's result
under ``all`` and ``priority:<p>``, a provider call under
``provider:<name>``, a worker's memory sample under ``worker:<id>``. An
:class:`Aggregate` holds what a window saw: counts, errors, cache hits,
tokens, cost, and latencies in the fixed buckets of :data:`LATENCY_BOUNDS_MS`,
so a p95 is read from the aggregate itself and two aggregates add up
exactly (:meth:`Aggregate.merge` is associative and commutative).

The hopping windows the alert rules look over (the last minute, the last five)
are runs of consecutive tumbling windows (:func:`span_starts`), hopping by
one window: merging them is exact, and nothing is stored twice.

How the counts stay exact with several workers: each worker adds its outcomes
to :class:`Deltas` in memory and sends what it gathered every flush interval,
one :class:`Batch` per subject, to a topic keyed by subject; the one owner of
that subject's partition adds it to the table row of each window
(:func:`apply_batch`). A row remembers the last batch it took from each
sender (``marks``), so a batch delivered twice (the owner died after writing
the row, before committing the offset) is added once.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field, replace
from typing import Any

# Upper bounds of the latency buckets, in milliseconds; one more bucket holds everything above the last.
# Prometheus' bucket edges (llmrouter/observability/metrics.py LATENCY_BUCKETS_S) in ms, so the two agree on a p95.
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000)
SUBJECT_KINDS = ("all", "priority", "provider", "worker")
ERROR_STATUSES = frozenset({"error", "timeout"})  # failed answers; "rejected" is deliberate, not a failure
FAILED_CALLS = frozenset({"error", "timeout"})  # what a provider is blamed for (a hedge's loser is "cancelled")
NOT_CALLED = "skipped"


def _zero_buckets() -> list[int]:
    return [0] * (len(LATENCY_BOUNDS_MS) + 1)


@dataclass
class Aggregate:
    """What one subject's window saw. ``count``: results (request subjects) or calls (provider subjects)."""

    count: int = 0
    errors: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_sum_ms: float = 0.0
    latency_counts: list[int] = field(default_factory=_zero_buckets)
    memory_max_bytes: int = 0  # worker subjects: the most resident memory sampled

    def observe_latency(self, latency_ms: float) -> None:
        self.latency_sum_ms += latency_ms
        self.latency_counts[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)] += 1

    def merge(self, other: Aggregate) -> Aggregate:
        """The two together, neither changed."""
        return Aggregate(
            count=self.count + other.count, errors=self.errors + other.errors,
            cache_hits=self.cache_hits + other.cache_hits, prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd, latency_sum_ms=self.latency_sum_ms + other.latency_sum_ms,
            latency_counts=[a + b for a, b in zip(self.latency_counts, other.latency_counts)],
            memory_max_bytes=max(self.memory_max_bytes, other.memory_max_bytes))

    @property
    def latencies(self) -> int:
        return sum(self.latency_counts)

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile of the latencies, as Prometheus' ``histogram_quantile`` reads buckets: linear
        within the bucket the rank falls in; above the last bound, the last bound. None with no latency."""
        total = self.latencies
        if total == 0:
            return None
        rank, seen = q * total, 0
        for i, n in enumerate(self.latency_counts):
            if n and seen + n >= rank:
                if i == len(LATENCY_BOUNDS_MS):
                    return float(LATENCY_BOUNDS_MS[-1])
                lower = LATENCY_BOUNDS_MS[i - 1] if i else 0.0
                return lower + (LATENCY_BOUNDS_MS[i] - lower) * (rank - seen) / n
            seen += n
        return float(LATENCY_BOUNDS_MS[-1])

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_sum_ms / self.latencies if self.latencies else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.count if self.count else None

    @property
    def hit_rate(self) -> float | None:
        return self.cache_hits / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.count, "e": self.errors, "h": self.cache_hits, "pt": self.prompt_tokens,
                "ct": self.completion_tokens, "usd": self.cost_usd, "ls": self.latency_sum_ms,
                "lc": self.latency_counts, "mem": self.memory_max_bytes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Aggregate:
        counts = [int(n) for n in data.get("lc", ())]
        if len(counts) != len(LATENCY_BOUNDS_MS) + 1:
            raise ValueError(f"an aggregate has {len(LATENCY_BOUNDS_MS) + 1} latency buckets, not {len(counts)}")
        return cls(count=int(data["n"]), errors=int(data["e"]), cache_hits=int(data["h"]),
                   prompt_tokens=int(data["pt"]), completion_tokens=int(data["ct"]), cost_usd=float(data["usd"]),
                   latency_sum_ms=float(data["ls"]), latency_counts=counts, memory_max_bytes=int(data["mem"]))

    def summary(self) -> dict[str, Any]:
        """The figures an operator reads (for the views): rates and quantiles, not buckets."""
        def rounded(value: float | None, digits: int = 1) -> float | None:
            return None if value is None else round(value, digits)

        return {"count": self.count, "errors": self.errors, "error_rate": rounded(self.error_rate, 4),
                "cache_hits": self.cache_hits, "hit_rate": rounded(self.hit_rate, 4),
                "p50_ms": rounded(self.quantile_ms(0.5)), "p95_ms": rounded(self.quantile_ms(0.95)),
                "p99_ms": rounded(self.quantile_ms(0.99)), "mean_ms": rounded(self.mean_latency_ms),
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 6), "memory_max_bytes": self.memory_max_bytes}


def merge_all(aggregates: list[Aggregate]) -> Aggregate:
    total = Aggregate()
    for aggregate in aggregates:
        total = total.merge(aggregate)
    return total


# ---- windows ------------------------------------------------------------------------------------------------------


def window_start(at_ms: int, size_ms: int) -> int:
    """The start of the tumbling window ``at_ms`` falls in (windows are aligned to the epoch)."""
    return at_ms - at_ms % size_ms


def span_starts(now_ms: int, size_ms: int, span_ms: int) -> list[int]:
    """The windows a hopping window of ``span_ms`` ending now is made of: every tumbling window that overlaps
    ``(now - span, now]``, the current (still open) one included, oldest first. It covers at least the span
    and at most one window more."""
    first = window_start(now_ms - span_ms + 1, size_ms)
    return list(range(first, window_start(now_ms, size_ms) + 1, size_ms))


def row_key(subject: str, start_ms: int) -> bytes:
    """The table key of one subject's window: ``provider:together@1764500040000``."""
    return f"{subject}@{start_ms}".encode()


def parse_row_key(key: bytes) -> tuple[str, int]:
    """``row_key``'s parts; ValueError for anything else."""
    subject, at, start = key.decode("utf-8", "replace").rpartition("@")
    if not at or not subject:
        raise ValueError(f"not a window key: {key!r}")
    return subject, int(start)


# ---- what a worker gathers between flushes --------------------------------------------------------------------------


class Deltas:
    """A worker's outcomes since its last flush, by subject and window."""

    def __init__(self, size_ms: int) -> None:
        self._size_ms = size_ms
        self._by_subject: dict[str, dict[int, Aggregate]] = {}

    def _window(self, subject: str, at_ms: int) -> Aggregate:
        windows = self._by_subject.setdefault(subject, {})
        start = window_start(at_ms, self._size_ms)
        aggregate = windows.get(start)
        if aggregate is None:
            aggregate = windows[start] = Aggregate()
        return aggregate

    def result(self, *, priority: str, status: str, route: str, latency_ms: float, prompt_tokens: int,
               completion_tokens: int, cost_usd: float, at_ms: int) -> None:
        """A request's result, under ``all`` and its priority. Tokens count only when a provider answered (a
        cache hit used none now)."""
        for subject in ("all", f"priority:{priority}"):
            window = self._window(subject, at_ms)
            window.count += 1
            window.errors += status in ERROR_STATUSES
            window.cache_hits += route == "cache"
            if route != "cache":
                window.prompt_tokens += prompt_tokens
                window.completion_tokens += completion_tokens
            window.cost_usd += cost_usd
            window.observe_latency(latency_ms)

    def call(self, *, provider: str, outcome: str, latency_ms: float, at_ms: int) -> None:
        """One attempt at a provider (a skipped one was no call and is not counted)."""
        if outcome == NOT_CALLED:
            return
        window = self._window(f"provider:{provider}", at_ms)
        window.count += 1
        window.errors += outcome in FAILED_CALLS
        window.observe_latency(latency_ms)

    def spent(self, *, provider: str, prompt_tokens: int, completion_tokens: int, cost_usd: float,
              at_ms: int) -> None:
        """What the provider that answered used and cost."""
        window = self._window(f"provider:{provider}", at_ms)
        window.prompt_tokens += prompt_tokens
        window.completion_tokens += completion_tokens
        window.cost_usd += cost_usd

    def memory(self, *, worker: str, rss_bytes: int, at_ms: int) -> None:
        window = self._window(f"worker:{worker}", at_ms)
        window.memory_max_bytes = max(window.memory_max_bytes, rss_bytes)

    def __bool__(self) -> bool:
        return bool(self._by_subject)

    def drain(self) -> dict[str, dict[int, Aggregate]]:
        """Everything gathered, by subject then window start; empty afterwards."""
        drained, self._by_subject = self._by_subject, {}
        return drained


# ---- the record a worker sends, and the row its owner keeps ---------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One subject's deltas from one sender (a worker process), numbered per sender in the order sent."""

    sender: str
    seq: int
    windows: dict[int, Aggregate]

    def to_bytes(self) -> bytes:
        return json.dumps({"sender": self.sender, "seq": self.seq,
                           "windows": {str(start): a.to_dict() for start, a in self.windows.items()}},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Batch:
        """ValueError on anything that is not a batch."""
        try:
            data = json.loads(raw)
            return cls(sender=str(data["sender"]), seq=int(data["seq"]),
                       windows={int(start): Aggregate.from_dict(a) for start, a in data["windows"].items()})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not an outcome batch: {exc!r}") from None


@dataclass(frozen=True)
class Row:
    """One subject's window as its owner keeps it: the aggregate, and the last batch taken from each sender."""

    aggregate: Aggregate
    marks: dict[str, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps({"a": self.aggregate.to_dict(), "m": self.marks}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Row:
        try:
            data = json.loads(raw)
            return cls(Aggregate.from_dict(data["a"]), {str(k): int(v) for k, v in data["m"].items()})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a window row: {exc!r}") from None


def apply_batch(row: Row | None, *, sender: str, seq: int, delta: Aggregate) -> Row | None:
    """The row with ``delta`` added, or None when this row took that batch (or a later one of the same
    sender) already: a batch delivered again is counted once. A sender's batches to one subject arrive in
    the order sent (one partition, one idempotent producer), so one number per sender is enough."""
    if row is not None and row.marks.get(sender, 0) >= seq:
        return None
    base = row or Row(Aggregate())
    return replace(base, aggregate=base.aggregate.merge(delta), marks={**base.marks, sender: seq})


def subject_kind(subject: str) -> str:
    """``provider:together`` -> ``provider``; ``all`` -> ``all``."""
    return subject.partition(":")[0]
