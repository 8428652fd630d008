"""What the gauges and /health/ read off the worker: lag by priority, a provider's status, result paths."""

from __future__ import annotations

from faust.types import TP
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from llmrouter.observability.metrics import path_of
from llmrouter.observability.dependencies import provider_status
from llmrouter.observability.gauges import LabelledSeries
from llmrouter.observability.state import lag_by_priority

STAGES = {"t.llm.requests.high": ("requests", "high"), "t.llm.accepted.high": ("accepted", "high")}


def test_lag_is_summed_per_priority_over_the_partitions_owned():
    """Two partitions of the high request topic, 3 and 4 behind: 7; the accepted topic caught up: 0."""
    a, b, c = TP("t.llm.requests.high", 0), TP("t.llm.requests.high", 1), TP("t.llm.accepted.high", 0)
    lag = lag_by_priority([a, b, c], {a: 10, b: 4, c: 8}, {a: 7, b: 0, c: 8}, STAGES)
    assert lag["requests"]["high"] == 7 and lag["accepted"]["high"] == 0


def test_a_partition_whose_end_or_commit_is_not_known_yet_leaves_its_lag_unknown():
    """No committed offset yet (a new group) or no end fetched: None, not a made-up number."""
    a, other = TP("t.llm.requests.high", 0), TP("elsewhere", 0)
    lag = lag_by_priority([a, other], {a: 10, other: 5}, {other: 0}, STAGES)
    assert lag["requests"]["high"] is None and lag["requests"]["low"] is None


def test_a_provider_is_down_when_unavailable_or_open_here_and_degraded_on_weaker_signs():
    """The breaker here decides what is called; the group's breaker and a failed check only warn."""
    status = lambda **kw: provider_status(**{"available": True, "healthy": True, "here": "closed",
                                             "group": "closed", **kw})[0]
    assert status() == "ok" and status(healthy=None, here=None, group=None) == "ok"
    assert status(available=False) == "down" and status(here="open") == "down"
    assert status(group="open") == "degraded" and status(healthy=False) == "degraded"
    assert status(here="half_open") == "degraded"


def test_the_path_of_a_result_is_its_cache_level_or_its_route():
    """A cache hit is counted under l1/l2/l3, an answer a provider gave under local or cloud, a refusal under none."""
    assert path_of({"route": "cache", "cache_level": "l2"}) == "l2"
    assert path_of({"route": "local"}) == "local" and path_of({"route": "cloud"}) == "cloud"
    assert path_of({"status": "rejected"}) == "none"


def test_a_gauge_series_of_a_provider_that_is_gone_is_removed_not_left_at_its_last_value():
    """Set twice: the second time without provider b, whose series disappears from the scrape."""
    registry = CollectorRegistry()
    gauge = Gauge("g", "a gauge", ["provider"], registry=registry)
    series = LabelledSeries(gauge)
    series.show({("a",): 1, ("b",): 2})
    series.show({("a",): 3})
    text = generate_latest(registry).decode()
    assert 'g{provider="a"} 3.0' in text and 'provider="b"' not in text

