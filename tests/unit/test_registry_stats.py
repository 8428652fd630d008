"""Per-provider figures: recent latency and error rate, totals of usage and cost, last health."""

from __future__ import annotations

from llmrouter.registry.stats import ProviderStats


def test_error_rate_and_latency_cover_only_the_recent_window():
    """With a window of 4, old failures age out; latency quantiles use successful calls only."""
    stats = ProviderStats(window=4)
    for ok, ms in [(False, 900), (False, 900), (True, 10), (True, 20), (True, 30), (True, 40)]:
        stats.record_call(ok=ok, latency_ms=ms)
    assert (stats.calls, stats.errors, stats.error_rate) == (6, 2, 0.0)
    assert stats.latency_ms(0.5) == 30 and stats.latency_ms(0.95) == 40


def test_a_provider_with_no_calls_has_no_latency_and_no_errors():
    """Nothing recorded: error rate 0, latency None, health unknown."""
    snapshot = ProviderStats().snapshot(now_s=0)
    assert snapshot["error_rate"] == 0 and snapshot["latency_p50_ms"] is None
    assert snapshot["health"]["healthy"] is None and snapshot["health"]["checked_s_ago"] is None


def test_usage_cost_and_health_are_kept():
    """Tokens and dollars add up; the last health check and its age are reported."""
    stats = ProviderStats()
    stats.record_usage(prompt_tokens=10, completion_tokens=5, cost_usd=0.002)
    stats.record_usage(prompt_tokens=1, completion_tokens=1, cost_usd=0.001)
    stats.record_health(healthy=False, detail="503 from /v1/models", latency_ms=12.0, at_s=100.0)
    snapshot = stats.snapshot(now_s=104.0)
    assert (snapshot["prompt_tokens"], snapshot["completion_tokens"], snapshot["cost_usd"]) == (11, 6, 0.003)
    assert snapshot["health"] == {"healthy": False, "detail": "503 from /v1/models", "latency_ms": 12.0,
                                  "checked_s_ago": 4.0}
