"""The circuit breaker's state machine, on a clock the tests move (no sleeping, no I/O)."""

from __future__ import annotations

import pytest

from llmrouter.core.breaker import Breaker, BreakerConfig, State

CONFIG = BreakerConfig(window_s=10, min_calls=4, failure_rate=0.5, consecutive_failures=3, cooldown_s=5,
                       max_cooldown_s=12, half_open_probes=2, ramp_s=10)


def calls(breaker: Breaker, now: float, *outcomes: bool) -> list:
    """Admit and record one call per outcome at ``now``; the transitions they caused."""
    moves = []
    for ok in outcomes:
        admission, moved = breaker.admit(now)
        assert admission.allowed
        moves += [m for m in (moved, breaker.record(now, ok, probe=admission.probe)) if m is not None]
    return moves


def open_breaker(now: float = 0.0) -> Breaker:
    breaker = Breaker(CONFIG, now_s=now)
    calls(breaker, now, False, False, False)
    assert breaker.state is State.OPEN
    return breaker


def test_it_opens_on_the_failure_rate_only_once_the_window_holds_min_calls():
    """2 failures of 3 calls: under min_calls, closed; the 4th call (2 of 4 failed, 50 %) opens it."""
    breaker = Breaker(CONFIG)
    assert calls(breaker, 0, False, True, False) == []
    [moved] = calls(breaker, 1, True)
    assert (moved.before, moved.after, moved.reason) == (State.CLOSED, State.OPEN, "2 of 4 calls failed in 10 s")


def test_failures_in_a_row_open_it_before_min_calls_and_a_success_resets_the_run():
    """min_calls 100 (the rate cannot open it): F F T F F stays closed; one more failure is three in a row."""
    breaker = Breaker(BreakerConfig(min_calls=100, consecutive_failures=3))
    assert calls(breaker, 0, False, False, True, False, False) == []
    [moved] = calls(breaker, 0, False)
    assert moved.after is State.OPEN and moved.reason == "3 failures in a row"


def test_outcomes_older_than_the_window_do_not_count():
    """Two failures at t=0, then two successes at t=11: the window (10 s) holds 0 of 2 failed."""
    breaker = Breaker(CONFIG)
    calls(breaker, 0, False, False)
    calls(breaker, 11, True, True)
    assert breaker.failure_rate(11) == (0, 2) and breaker.state is State.CLOSED


def test_open_refuses_until_the_cool_down_then_lets_exactly_the_probes_through():
    breaker = open_breaker(0)
    refused, moved = breaker.admit(4.9)
    assert not refused.allowed and moved is None and "0.1 s more" in refused.reason
    first, moved = breaker.admit(5.0)
    assert first.allowed and first.probe and moved.after is State.HALF_OPEN
    second, _ = breaker.admit(5.0)
    third, _ = breaker.admit(5.0)
    assert second.allowed and second.probe and not third.allowed and "probes are out" in third.reason


def test_successful_probes_close_it_and_traffic_ramps_back_gradually():
    """Two probes ok: closed. Then the admitted share grows from 1/2 to all over ramp_s (10 s)."""
    breaker = open_breaker(0)
    moves = calls(breaker, 5, True, True)
    assert [m.after for m in moves] == [State.HALF_OPEN, State.CLOSED]
    admitted_at_start = sum(breaker.admit(5.0)[0].allowed for _ in range(100))
    admitted_midway = sum(breaker.admit(10.0)[0].allowed for _ in range(100))
    admitted_after = sum(breaker.admit(15.0)[0].allowed for _ in range(100))
    assert admitted_at_start == 50 and 50 < admitted_midway < 100 and admitted_after == 100
    assert breaker.ramp_share(7.5) == pytest.approx(0.625)


def test_a_failed_probe_reopens_it_with_the_cool_down_doubled_up_to_the_cap():
    breaker = open_breaker(0)
    [_, reopened] = calls(breaker, 5, False)
    assert reopened.after is State.OPEN and breaker.cooldown_s == 10
    assert not breaker.admit(14.9)[0].allowed  # 10 s now
    calls(breaker, 15, False)
    assert breaker.cooldown_s == 12  # capped
    calls(breaker, 27, True, True)
    assert breaker.state is State.CLOSED and breaker.cooldown_s == 5  # recovered: back to the configured cool-down


def test_an_outcome_reported_after_the_breaker_opened_does_not_count():
    """A call admitted while closed that ends after the breaker opened is neither a probe nor in any window."""
    breaker = Breaker(CONFIG)
    late, _ = breaker.admit(0)
    calls(breaker, 0, False, False, False)
    assert breaker.record(1, False, probe=late.probe) is None and breaker.state is State.OPEN


def test_the_state_survives_a_round_trip_through_a_dict_and_goes_on_the_same():
    """What a table stores: a copy restored mid-window opens on the same next call as the original."""
    original = Breaker(CONFIG)
    calls(original, 0, False, True, False)
    copy = Breaker.from_dict(CONFIG, original.to_dict())
    assert copy.to_dict() == original.to_dict()
    assert calls(copy, 1, True) == calls(original, 1, True)
    assert copy.state is State.OPEN


def test_an_illegal_transition_is_refused():
    breaker = Breaker(CONFIG)
    with pytest.raises(RuntimeError, match="illegal breaker transition closed -> half_open"):
        breaker._move(State.HALF_OPEN, 0, "no")


@pytest.mark.parametrize(("fields", "message"), [
    ({"failure_rate": 0}, "failure_rate must be more than 0 and at most 1"),
    ({"cooldown_s": 90}, "cooldown_s must be more than 0 and at most max_cooldown_s"),
    ({"half_open_probes": 0}, "half_open_probes must be at least 1"),
])
def test_a_bad_config_is_refused_with_a_sentence(fields, message):
    with pytest.raises(ValueError, match=message):
        BreakerConfig(**fields)


def test_an_outcome_that_says_nothing_of_health_is_not_counted_and_gives_a_probe_back():
    """ok=None (a 429): closed, it is not in the window; half-open, the probe's slot is free again."""
    breaker = Breaker(CONFIG)
    breaker.record(0, None)
    assert breaker.failure_rate(0) == (0, 0)
    breaker = open_breaker(0)
    probe, _ = breaker.admit(5)
    other, _ = breaker.admit(5)
    assert probe.allowed and other.allowed and not breaker.admit(5)[0].allowed  # two probes out
    assert breaker.record(5, None, probe=True) is None and breaker.state is State.HALF_OPEN
    assert breaker.admit(5)[0].allowed  # its slot is given back


def test_a_breaker_told_outcomes_only_half_opens_on_its_own_once_the_cool_down_is_over():
    """tick() moves OPEN -> HALF_OPEN after the cool-down without using up a probe; the next outcomes are probes."""
    breaker = Breaker(BreakerConfig(consecutive_failures=1, cooldown_s=5, half_open_probes=2, ramp_s=0))
    breaker.record(0.0, False)
    assert breaker.tick(4.9) is None and breaker.open_until() == 5.0
    assert breaker.tick(5.0).after is State.HALF_OPEN
    breaker.record(5.1, True, probe=True)
    assert breaker.record(5.2, True, probe=True).after is State.CLOSED


def test_tripped_by_another_worker_a_breaker_opens_until_then_and_probes_after():
    """trip() opens a closed breaker until the given time; an open one is only ever held longer, never less."""
    breaker = Breaker(BreakerConfig(cooldown_s=5, half_open_probes=1, ramp_s=0))
    moved = breaker.trip(10.0, 13.0, "the provider's owner opened it")
    assert (moved.before, moved.after, moved.reason) == (State.CLOSED, State.OPEN, "the provider's owner opened it")
    assert breaker.trip(11.0, 12.0, "earlier") is None and breaker.open_until() == 13.0
    assert breaker.trip(11.0, 20.0, "later") is None and breaker.open_until() == 20.0
    admission, moved = breaker.admit(20.0)
    assert admission.probe and moved.after is State.HALF_OPEN
    assert breaker.trip(20.0, 19.0, "in the past") is None
