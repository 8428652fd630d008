"""When a priority is paused and resumed (llmrouter/core/backpressure.py), on a clock the tests move."""

from __future__ import annotations

import pytest

from llmrouter.core.backpressure import BackpressureConfig, Load, PriorityBackpressure, chain_out_of_tokens

CONFIG = BackpressureConfig(pause_waiting=2, resume_waiting=0, pause_after_s=1.0, resume_after_s=3.0,
                            max_resume_after_s=12.0)
STEP_S = 0.1


def feed(bp: PriorityBackpressure, load: Load, start_s: float, seconds: float) -> list:
    """One sample every STEP_S from ``start_s`` for ``seconds``: the changes, in order."""
    changes, steps = [], round(seconds / STEP_S)
    for i in range(steps + 1):
        change = bp.observe(load, start_s + i * STEP_S)
        if change is not None:
            changes.append(change)
    return changes


def waiting(**by_priority: int) -> Load:
    return Load(waiting=by_priority)


def test_low_is_paused_once_more_urgent_requests_have_waited_for_a_slot_for_the_dwell_time():
    """Two normal requests waiting for a provider slot, sample after sample: low pauses after 1 s, not before."""
    bp = PriorityBackpressure(CONFIG)
    assert feed(bp, waiting(normal=2, low=5), 0.0, 0.9) == []
    change = bp.observe(waiting(normal=2, low=5), 1.0)
    assert change is not None and change.priority == "low" and change.paused and change.pressure == 2
    assert bp.paused == ["low"]


def test_a_flood_of_one_priority_alone_is_never_paused():
    """Only low waits: nothing more urgent needs the capacity, so pausing low would just idle the provider."""
    bp = PriorityBackpressure(CONFIG)
    assert feed(bp, waiting(low=40), 0.0, 30.0) == []
    assert bp.paused == []


def test_a_pressure_that_breaks_off_starts_the_dwell_time_again():
    """Pressure for 0.9 s, one sample without, 0.9 s again: no pause; the streak must be unbroken."""
    bp = PriorityBackpressure(CONFIG)
    assert feed(bp, waiting(normal=3), 0.0, 0.9) == []
    assert bp.observe(waiting(normal=1), 1.0) is None
    assert feed(bp, waiting(normal=3), 1.1, 0.9) == []
    assert bp.paused == []


def test_priorities_are_paused_lowest_first_one_dwell_time_apart_and_critical_never():
    """Critical requests waiting all along: low at 1 s, normal at 2 s, high at 3 s, then nothing more."""
    bp = PriorityBackpressure(CONFIG)
    changes = feed(bp, waiting(critical=4, high=4, normal=4, low=4), 0.0, 10.0)
    assert [(c.priority, c.paused, c.at_s) for c in changes] == [
        ("low", True, pytest.approx(1.0)), ("normal", True, pytest.approx(2.0)), ("high", True, pytest.approx(3.0))]
    assert bp.paused == ["low", "normal", "high"]


def test_normal_is_not_paused_for_its_own_waiting_once_low_is():
    """low + normal flood: low pauses (normal waits); normal's own waiting never pauses normal."""
    bp = PriorityBackpressure(CONFIG)
    changes = feed(bp, waiting(normal=4, low=4), 0.0, 20.0)
    assert [(c.priority, c.paused) for c in changes] == [("low", True)]


def test_the_deepest_setting_bounds_how_far_pausing_goes():
    """deepest=normal: high keeps flowing even while critical waits."""
    bp = PriorityBackpressure(BackpressureConfig(pause_waiting=1, pause_after_s=1.0, deepest="normal"))
    changes = feed(bp, waiting(critical=3), 0.0, 10.0)
    assert [c.priority for c in changes] == ["low", "normal"]


def test_the_last_paused_resumes_first_after_the_calm_and_each_waits_its_own_dwell_time():
    """Paused low, normal; calm from 10 s: normal resumes at 13 s, low at 16 s."""
    bp = PriorityBackpressure(CONFIG)
    feed(bp, waiting(high=2), 0.0, 2.0)
    assert bp.paused == ["low", "normal"]
    changes = feed(bp, waiting(), 10.0, 10.0)
    assert [(c.priority, c.paused, c.at_s) for c in changes] == [
        ("normal", False, pytest.approx(13.0)), ("low", False, pytest.approx(16.0))]
    assert bp.paused == []


def test_between_the_two_thresholds_nothing_moves():
    """Low paused; one normal request waiting (above resume_waiting 0, below pause_waiting 2): low stays
    paused and normal is not paused, however long it lasts."""
    bp = PriorityBackpressure(CONFIG)
    feed(bp, waiting(normal=2), 0.0, 1.0)
    assert bp.paused == ["low"]
    assert feed(bp, waiting(normal=1), 1.1, 60.0) == []
    assert bp.paused == ["low"]


def test_a_relapse_soon_after_a_resume_doubles_the_next_resume_wait_up_to_its_cap():
    """Sustained overload in cycles: each pause right after a resume doubles the wait (3, 6, 12, 12 s)."""
    bp = PriorityBackpressure(CONFIG)
    now, waits = 0.0, []
    for _ in range(4):
        feed(bp, waiting(normal=2), now, 1.0)  # pressure: low pauses
        assert bp.paused == ["low"]
        waits.append(bp.resume_wait_s("low"))
        changes = feed(bp, waiting(), now + 1.1, bp.resume_wait_s("low") + 0.1)
        assert [c.paused for c in changes] == [False]
        now = changes[0].at_s + STEP_S  # pressure comes back at once
    assert waits == [3.0, 6.0, 12.0, 12.0]


def test_a_pause_after_a_long_calm_starts_again_from_the_base_resume_wait():
    """After a relapse doubled it, a pause long after the last resume waits resume_after_s again."""
    bp = PriorityBackpressure(CONFIG)
    feed(bp, waiting(normal=2), 0.0, 1.0)
    feed(bp, waiting(), 1.1, 3.1)
    feed(bp, waiting(normal=2), 4.3, 1.0)
    assert bp.resume_wait_s("low") == 6.0
    feed(bp, waiting(), 5.4, 6.1)
    assert bp.paused == []
    feed(bp, waiting(normal=2), 100.0, 1.0)
    assert bp.paused == ["low"] and bp.resume_wait_s("low") == 3.0


def test_rate_limit_tokens_out_along_the_chain_pauses_every_priority_but_critical_in_turn():
    """Nothing waits at a bulkhead (calls are refused at once), but no provider has a token: low, normal and
    high pause one second apart; when tokens come back they resume in reverse."""
    bp = PriorityBackpressure(CONFIG)
    changes = feed(bp, Load(waiting={}, tokens_out=True), 0.0, 5.0)
    assert [c.priority for c in changes] == ["low", "normal", "high"]
    assert "rate-limit tokens" in changes[0].reason
    changes = feed(bp, Load(waiting={}, tokens_out=False), 10.0, 10.0)
    assert [(c.priority, c.paused) for c in changes] == [("high", False), ("normal", False), ("low", False)]


def test_every_usable_provider_must_be_out_of_tokens_for_the_chain_to_be():
    """A provider without a limit (absent from spent) or with tokens left gives the chain room; no chain is
    an outage, not backpressure."""
    assert chain_out_of_tokens(["a", "b"], {"a": True, "b": True})
    assert not chain_out_of_tokens(["a", "b"], {"a": True, "b": False})
    assert not chain_out_of_tokens(["a", "local"], {"a": True})
    assert not chain_out_of_tokens([], {})


def test_a_config_with_no_band_between_the_thresholds_is_refused_in_a_sentence():
    """resume_waiting must be below pause_waiting, and critical can never be the deepest."""
    with pytest.raises(ValueError, match="less than pause_waiting"):
        BackpressureConfig(pause_waiting=2, resume_waiting=2)
    with pytest.raises(ValueError, match="critical is never paused"):
        BackpressureConfig(deepest="critical")
