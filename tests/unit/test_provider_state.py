"""The provider state every worker shares: reports folded into one breaker by the provider's owner."""

from __future__ import annotations

import pytest

from llmrouter.core.breaker import BreakerConfig
from llmrouter.core.provider_state import OutcomeBuffer, Report, apply

CONFIG = BreakerConfig(consecutive_failures=3, min_calls=10, failure_rate=0.5, cooldown_s=5, half_open_probes=2,
                       ramp_s=0)


def test_failures_from_two_workers_add_up_to_open_the_breaker():
    """Two failures from one worker and one from another: three in a row for the owner, so it opens."""
    state, moves = apply(None, Report("w1", "100"), config=CONFIG, now_s=100.0)
    assert state["state"] == "closed" and moves == []
    state, moves = apply(state, Report("w2", "0"), config=CONFIG, now_s=100.1)
    assert state["state"] == "open" and state["open_until_s"] == pytest.approx(105.1)
    assert [m.after.value for m in moves] == ["open"] and "3 failures in a row" in state["reason"]


def test_after_the_cool_down_reported_outcomes_are_probes_that_close_it():
    """Once the cool-down is over the next report half-opens it, and two ok outcomes close it."""
    state, _ = apply(None, Report("w1", "000"), config=CONFIG, now_s=0.0)
    state, moves = apply(state, Report("w1", "1"), config=CONFIG, now_s=2.0)
    assert state["state"] == "open" and moves == []  # a call made before it opened: too late to count
    state, moves = apply(state, Report("w2", "11"), config=CONFIG, now_s=6.0)
    assert [m.after.value for m in moves] == ["half_open", "closed"] and state["open_until_s"] is None


def test_a_failed_probe_opens_it_again_for_twice_as_long():
    state, _ = apply(None, Report("w1", "000"), config=CONFIG, now_s=0.0)
    state, moves = apply(state, Report("w1", "0"), config=CONFIG, now_s=6.0)
    assert [m.after.value for m in moves] == ["half_open", "open"]
    assert state["open_until_s"] == pytest.approx(16.0)


def test_the_latest_429_wait_is_kept_as_reported_whenever_the_report_arrives():
    """A wait is an end time, not a duration: a report that arrives late does not stretch it."""
    state, _ = apply(None, Report("w1", "", throttled_until_s=13.0), config=CONFIG, now_s=10.0)
    state, _ = apply(state, Report("w2", "1", throttled_until_s=11.0), config=CONFIG, now_s=12.5)
    assert state["throttled_until_s"] == pytest.approx(13.0) and state["state"] == "closed"


def test_a_worker_reports_its_outcomes_in_order_and_starts_afresh():
    """Health-neutral outcomes (None) are not reported; a 429 wait is; drain() empties the buffer."""
    buffer = OutcomeBuffer()
    for ok in (True, None, False, True):
        buffer.add("hf", ok)
    buffer.throttled("together", 1002.0)
    buffer.throttled("together", 1001.0)
    reports = buffer.drain("w1")
    assert reports == {"hf": Report("w1", "101"), "together": Report("w1", "", 1002.0)}
    assert buffer.drain("w1") == {}


def test_reports_round_trip_and_garbage_is_refused():
    report = Report("host:6066", "0110", 1.5)
    assert Report.from_bytes(report.to_bytes()) == report
    for raw in (b"nope", b"{}", b'{"worker": "w", "outcomes": "01x"}', b"[1]"):
        with pytest.raises(ValueError):
            Report.from_bytes(raw)
