"""Finishing a result: /metrics, the windows and the canonical line count the same results, replays apart."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from llmrouter.observability.finish import Finisher
from llmrouter.observability.metrics import Metrics
from llmrouter.wire.contract import Request, result_record, unparsed_result_record


class Windows:
    """The windows' recorder, writing down each result it is given."""

    def __init__(self) -> None:
        self.results: list[tuple[str, dict[str, Any]]] = []

    def result(self, priority: str, record: dict[str, Any]) -> None:
        self.results.append((priority, record))


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_refusal_and_a_dead_letter_count_in_the_windows_as_in_metrics() -> None:
    """Every result (a refusal, a dead letter's error) counts once in request_total and once in the windows."""
    metrics, windows = Metrics(), Windows()
    finish = Finisher(metrics, windows)
    refused = result_record(Request(request_id="r1", prompt="hi", priority="high"), status="rejected", now_ms=5,
                            error_code="prompt_too_long", error_message="long")
    dead = unparsed_result_record("r2", priority="low", received_at_ms=1, now_ms=4, error_code="invalid_request",
                                  error_message="no prompt")
    with capture_logs() as lines:
        finish.result("intake", refused)
        finish.result("intake", dead, request_id="r2")
    assert [(p, r["status"]) for p, r in windows.results] == [("high", "rejected"), ("low", "error")]
    assert counted(metrics, "llmrouter_request_total", priority="high", status="rejected", path="none",
                   provider="none") == 1
    assert counted(metrics, "llmrouter_request_total", priority="low", status="error", path="none",
                   provider="none") == 1
    assert [line["event"] for line in lines] == ["request_answered", "request_answered"]


def test_a_replay_after_the_first_copy_counts_as_a_replay_only() -> None:
    """A stored result sent again once its first copy went out: replays_total, no new result anywhere."""
    metrics, windows = Metrics(), Windows()
    with capture_logs() as lines:
        Finisher(metrics, windows).replayed("answer", priority="normal", status="ok")
    assert counted(metrics, "llmrouter_replays_total") == 1 and windows.results == []
    assert metrics.registry.get_sample_value("llmrouter_request_total", {}) is None
    assert lines[0]["replayed"] is True and lines[0]["first_copy"] is False


def test_the_first_copy_of_a_stored_answer_counts_as_its_result() -> None:
    """A crash between store and send: the re-emit is the first delivery, so it is counted as the result."""
    metrics, windows = Metrics(), Windows()
    record = result_record(Request(request_id="r3", prompt="hi"), status="ok", now_ms=9, route="local",
                           provider="local")
    Finisher(metrics, windows).replayed("answer", priority="normal", first_copy=True, record=record)
    assert counted(metrics, "llmrouter_replays_total") == 1 and len(windows.results) == 1
    assert counted(metrics, "llmrouter_request_total", priority="normal", status="ok", path="local",
                   provider="local") == 1


def test_without_windows_the_metrics_still_count() -> None:
    """Windows off (None): a result still counts in /metrics."""
    metrics = Metrics()
    Finisher(metrics).result("answer", result_record(Request(request_id="r4", prompt="x"), status="ok", now_ms=1))
    assert counted(metrics, "llmrouter_request_total", priority="normal", status="ok", path="none",
                   provider="none") == 1
