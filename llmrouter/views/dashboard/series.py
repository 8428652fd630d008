"""The dashboard's time series, from readings of the worker's own Prometheus counters: pure.

A :class:`Reading` is what the counters say at one moment (requests by path
and status, the latency histogram by path, cache hits and misses, spend by
provider, dead letters). Two readings make a :class:`Point`: the rates over
the interval between them, and latency percentiles over a longer window
(a second rarely holds enough requests for a p99).

Percentiles are read from histogram buckets the way Prometheus'
``histogram_quantile`` does: linear within the bucket the rank falls in, the
upper bound of the last finite bucket when it falls in ``+Inf``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Sample = tuple[str, Mapping[str, str], float]  # (sample name, labels, value), as prometheus_client collects them
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
CACHE_PATHS = ("l1", "l2", "l3")


@dataclass(frozen=True)
class Reading:
    """Cumulative counters at ``at_s`` (seconds, any monotonic origin)."""

    at_s: float
    requests: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (path, status) -> count
    buckets: Mapping[str, Mapping[float, float]] = field(default_factory=dict)  # path -> upper bound -> cumulative
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    spend_usd: Mapping[str, float] = field(default_factory=dict)  # provider -> US dollars
    dead_letters: float = 0.0


def reading_from(samples: Iterable[Sample], *, at_s: float, prefix: str = "llmrouter_") -> Reading:
    """The counters of interest among ``samples`` (every priority and provider summed)."""
    requests: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    spend: dict[str, float] = defaultdict(float)
    hits = misses = dead = 0.0
    for name, labels, value in samples:
        if not name.startswith(prefix):
            continue
        name = name[len(prefix):]
        if name == "request_total":
            requests[(labels.get("path", "none"), labels.get("status", ""))] += value
        elif name == "request_duration_seconds_bucket":
            buckets[labels.get("path", "none")][float(labels["le"])] += value
        elif name == "cache_hits_total":
            hits += value
        elif name == "cache_misses_total":
            misses += value
        elif name == "provider_cost_usd_total":
            spend[labels.get("provider", "")] += value
        elif name == "dlq_total":
            dead += value
    return Reading(at_s=at_s, requests=dict(requests), buckets={p: dict(b) for p, b in buckets.items()},
                   cache_hits=hits, cache_misses=misses, spend_usd=dict(spend), dead_letters=dead)


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of a histogram given as upper bound -> cumulative count; None when it is empty."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    total = cumulative[bounds[-1]]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bound: the most that can be said
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def merged(histograms: Iterable[Mapping[float, float]]) -> dict[float, float]:
    """Histograms with the same bounds summed bucket by bucket (the cache levels into one ``cache`` path)."""
    out: dict[float, float] = defaultdict(float)
    for histogram in histograms:
        for bound, count in histogram.items():
            out[bound] += count
    return dict(out)


def delta(new: Mapping[Any, float], old: Mapping[Any, float]) -> dict[Any, float]:
    """Per key, how much a counter grew (a counter that went back, a restarted worker, counts from zero)."""
    out = {}
    for key, value in new.items():
        before = old.get(key, 0.0)
        out[key] = value - before if value >= before else value
    return out


def point(previous: Reading, current: Reading, window_start: Reading | None = None) -> dict[str, Any]:
    """The rates between two readings; latency percentiles (ms) per path over ``window_start`` .. ``current``
    (default: the same interval). Paths are those of ``request_total`` plus ``cache`` (every level together)."""
    seconds = max(current.at_s - previous.at_s, 1e-9)
    requests = delta(current.requests, previous.requests)
    by_path: dict[str, float] = defaultdict(float)
    errors = 0.0
    for (path, status), count in requests.items():
        by_path[path] += count
        if status in ("error", "timeout"):
            errors += count
    total = sum(by_path.values())
    lookups_hit = delta({"h": current.cache_hits}, {"h": previous.cache_hits})["h"]
    lookups_missed = delta({"m": current.cache_misses}, {"m": previous.cache_misses})["m"]
    start = window_start or previous
    latency_by_path = {path: delta(histogram, start.buckets.get(path, {}))
                       for path, histogram in current.buckets.items()}
    cache_levels = [latency_by_path[level] for level in CACHE_PATHS if level in latency_by_path]
    if cache_levels:
        latency_by_path["cache"] = merged(cache_levels)
    latency_ms = {}
    for path, histogram in latency_by_path.items():
        values = {name: quantile(q, histogram) for name, q in QUANTILES.items()}
        latency_ms[path] = {name: None if v is None else round(v * 1000.0, 3) for name, v in values.items()}
    lookups = lookups_hit + lookups_missed
    return {
        "t": round(current.at_s, 3),
        "throughput_per_s": round(total / seconds, 3),
        "throughput_by_path_per_s": {path: round(n / seconds, 3) for path, n in sorted(by_path.items())},
        "errors_per_s": round(errors / seconds, 3),
        "error_rate": round(errors / total, 4) if total else None,
        "cache_hit_rate": round(lookups_hit / lookups, 4) if lookups else None,
        "latency_ms": latency_ms,
        "spend_usd": round(sum(current.spend_usd.values()), 6),
        "dead_letters": current.dead_letters,
    }
