"""The dashboard's series from readings of the counters: rates, percentiles from buckets, cache hit rate."""

from __future__ import annotations

import math

import pytest

from llmrouter.views.dashboard.history import DashboardHistory
from llmrouter.views.dashboard.series import Reading, merged, point, quantile, reading_from

INF = math.inf


def test_a_quantile_is_interpolated_within_the_bucket_its_rank_falls_in():
    """10 observations, 4 at most 0.1 s and 10 at most 0.5 s: the median lies 1/6 of the way into (0.1, 0.5]."""
    assert quantile(0.5, {0.1: 4, 0.5: 10, INF: 10}) == pytest.approx(0.1 + 0.4 * (5 - 4) / 6)


def test_a_quantile_in_the_infinite_bucket_is_the_last_finite_bound():
    """What lies beyond the last bound is only known to be beyond it, as histogram_quantile says."""
    assert quantile(0.99, {0.1: 1, 0.5: 2, INF: 10}) == 0.5


def test_an_empty_histogram_has_no_quantile():
    """No observation in the window: None, not 0 (a chart shows a gap, not a fast request)."""
    assert quantile(0.5, {0.1: 0, INF: 0}) is None and quantile(0.5, {}) is None


def test_histograms_merge_bucket_by_bucket():
    """The cache levels summed into one cache path."""
    assert merged([{0.1: 1, INF: 2}, {0.1: 3, INF: 3}]) == {0.1: 4, INF: 5}


def test_a_reading_sums_every_priority_and_provider_and_ignores_other_metrics():
    """request_total by (path, status) over priorities, buckets by path, cost over providers."""
    samples = [
        ("llmrouter_request_total", {"priority": "high", "path": "local", "status": "ok", "provider": "local"}, 2.0),
        ("llmrouter_request_total", {"priority": "low", "path": "local", "status": "ok", "provider": "local"}, 3.0),
        ("llmrouter_request_duration_seconds_bucket", {"priority": "low", "path": "l1", "le": "0.1"}, 4.0),
        ("llmrouter_request_duration_seconds_bucket", {"priority": "high", "path": "l1", "le": "0.1"}, 1.0),
        ("llmrouter_request_duration_seconds_bucket", {"priority": "high", "path": "l1", "le": "+Inf"}, 1.0),
        ("llmrouter_cache_hits_total", {"level": "l1"}, 7.0), ("llmrouter_cache_misses_total", {}, 3.0),
        ("llmrouter_provider_cost_usd_total", {"provider": "a"}, 0.5),
        ("llmrouter_provider_cost_usd_total", {"provider": "b"}, 0.25),
        ("llmrouter_dlq_total", {"code": "x"}, 2.0), ("process_cpu_seconds_total", {}, 99.0),
    ]
    reading = reading_from(samples, at_s=10.0)
    assert reading.requests == {("local", "ok"): 5.0}
    assert reading.buckets == {"l1": {0.1: 5.0, INF: 1.0}}
    assert (reading.cache_hits, reading.cache_misses, reading.dead_letters) == (7.0, 3.0, 2.0)
    assert reading.spend_usd == {"a": 0.5, "b": 0.25}


def test_a_point_has_the_rates_of_its_interval_and_percentiles_per_path_with_the_cache_levels_together():
    """Two seconds, 10 local and 4 cache answers (one an error): 7 req/s; l1 and l2 merge into cache."""
    before = Reading(at_s=100.0, requests={("local", "ok"): 5}, cache_hits=1, cache_misses=1,
                     buckets={"local": {0.5: 5, INF: 5}, "l1": {0.01: 0, INF: 0}}, spend_usd={"sim": 0.1})
    after = Reading(at_s=102.0, requests={("local", "ok"): 14, ("local", "error"): 1, ("l1", "ok"): 2, ("l2", "ok"): 2},
                    cache_hits=5, cache_misses=3, spend_usd={"sim": 0.3}, dead_letters=1,
                    buckets={"local": {0.5: 15, INF: 15}, "l1": {0.01: 2, INF: 2}, "l2": {0.01: 0, INF: 2}})
    p = point(before, after)
    assert p["t"] == 102.0 and p["throughput_per_s"] == 7.0 and p["errors_per_s"] == 0.5
    assert p["throughput_by_path_per_s"] == {"l1": 1.0, "l2": 1.0, "local": 5.0}
    assert p["error_rate"] == round(1 / 14, 4) and p["cache_hit_rate"] == round(4 / 6, 4)
    assert p["latency_ms"]["local"]["p50"] == 250.0  # 10 new ones, all in (0, 0.5]
    assert p["latency_ms"]["cache"]["p50"] == 10.0  # l1's two within 10 ms, l2's two beyond: the median at 10 ms
    assert p["spend_usd"] == 0.3 and p["dead_letters"] == 1


def test_a_point_with_no_traffic_has_no_rates_to_divide():
    """No request and no lookup: zero throughput, and no error rate, hit rate or percentile at all."""
    quiet = Reading(at_s=1.0, buckets={"local": {0.5: 3, INF: 3}})
    p = point(quiet, Reading(at_s=2.0, buckets={"local": {0.5: 3, INF: 3}}))
    assert p["throughput_per_s"] == 0 and p["error_rate"] is None and p["cache_hit_rate"] is None
    assert p["latency_ms"]["local"] == {"p50": None, "p95": None, "p99": None}


def test_percentiles_look_back_over_the_window_while_rates_use_the_last_interval():
    """The window's first reading bounds the percentiles; the previous one the rates."""
    start = Reading(at_s=0.0, buckets={"local": {0.1: 0, 1.0: 0, INF: 0}})
    previous = Reading(at_s=9.0, requests={("local", "ok"): 10}, buckets={"local": {0.1: 10, 1.0: 10, INF: 10}})
    current = Reading(at_s=10.0, requests={("local", "ok"): 11}, buckets={"local": {0.1: 10, 1.0: 11, INF: 11}})
    p = point(previous, current, window_start=start)
    assert p["throughput_per_s"] == 1.0
    assert p["latency_ms"]["local"]["p50"] == pytest.approx(0.1 * 5.5 / 10 * 1000)


def test_a_counter_that_went_back_counts_from_zero():
    """A worker restarted between two readings: its counters start again, no negative rate."""
    p = point(Reading(at_s=0.0, requests={("cloud", "ok"): 50}), Reading(at_s=1.0, requests={("cloud", "ok"): 3}))
    assert p["throughput_per_s"] == 3.0


def test_the_history_adds_a_point_per_reading_from_the_second_one_with_the_breakers_of_that_moment():
    """Three readings a second apart: two points, each with the rate of its second and the breakers then."""
    clock, count = iter([0.0, 1.0, 2.0]), iter([0.0, 4.0, 10.0])
    history = DashboardHistory(
        samples=lambda: [("llmrouter_request_total", {"path": "local", "status": "ok"}, next(count))],
        breakers=lambda: {"sim": {"here": "closed", "group": None}}, clock=lambda: next(clock), keep=10)
    for _ in range(3):
        history.sample()
    assert [p["throughput_per_s"] for p in history.points] == [4.0, 6.0]
    assert history.points[-1]["breakers"] == {"sim": {"here": "closed", "group": None}}
