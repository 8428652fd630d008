"""The load test's schedules: due times of the open loop, room in the closed loop, the bounds."""

from __future__ import annotations

import pytest

from llmrouter.errors import ConfigError
from llmrouter.loadtest.schedule import Bounds, ClosedLoop, OpenLoop


def test_an_open_loop_spaces_requests_evenly_at_its_rate():
    """Uniform arrivals: request i is due at i / rate."""
    assert list(OpenLoop(4).due_times(Bounds(count=5))) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_duration_bounds_the_due_times_and_whichever_bound_comes_first_wins():
    """Only requests due before the duration are sent; with a count as well, the smaller bound holds."""
    assert len(list(OpenLoop(100).due_times(Bounds(duration_s=2)))) == 200
    assert len(list(OpenLoop(100).due_times(Bounds(count=50, duration_s=2)))) == 50
    assert len(list(OpenLoop(10).due_times(Bounds(count=500, duration_s=2)))) == 20


def test_poisson_arrivals_keep_the_mean_rate_and_repeat_with_the_seed():
    """Poisson arrivals: seeded, increasing, and about ``rate`` per second on average."""
    due = list(OpenLoop(200, arrivals="poisson", seed=7).due_times(Bounds(count=4000)))
    assert due == list(OpenLoop(200, arrivals="poisson", seed=7).due_times(Bounds(count=4000)))
    assert all(a <= b for a, b in zip(due, due[1:]))
    assert 190 < len(due) / due[-1] < 210
    assert due != list(OpenLoop(200, arrivals="poisson", seed=8).due_times(Bounds(count=4000)))


def test_the_expected_count_is_what_the_bounds_let_through():
    """For a progress bar: the count, or rate x duration, whichever is smaller; unknown for a closed loop
    bounded by time alone."""
    assert OpenLoop(300).expected_count(Bounds(duration_s=20)) == 6000
    assert OpenLoop(300).expected_count(Bounds(count=1000, duration_s=20)) == 1000
    assert ClosedLoop(8).expected_count(Bounds(count=1000)) == 1000
    assert ClosedLoop(8).expected_count(Bounds(duration_s=5)) is None


def test_a_closed_loop_has_room_for_what_is_not_outstanding():
    """Room = concurrency minus requests still unanswered, never below zero."""
    loop = ClosedLoop(4, give_up_s=10)
    assert loop.room([], now_s=0) == 4
    assert loop.room([1.0, 2.0, 3.0], now_s=5) == 1
    assert loop.room([1.0, 2.0, 3.0, 4.0, 4.5], now_s=5) == 0


def test_a_closed_loop_gives_up_a_slot_held_too_long():
    """A request unanswered for give_up_s stops holding its slot, so a lost one cannot stall the loop."""
    loop = ClosedLoop(2, give_up_s=10)
    assert loop.room([0.0, 9.0], now_s=9.5) == 0
    assert loop.room([0.0, 9.0], now_s=10.0) == 1


@pytest.mark.parametrize("make, words", [
    (lambda: Bounds(), "--count or --duration"),
    (lambda: Bounds(count=0), "--count must be at least 1"),
    (lambda: Bounds(duration_s=0), "--duration must be more than 0"),
    (lambda: OpenLoop(0), "--rate must be more than 0"),
    (lambda: OpenLoop(10, arrivals="bursty"), "--arrivals must be one of uniform, poisson"),
    (lambda: ClosedLoop(0), "--concurrency must be at least 1"),
])
def test_bad_parameters_are_refused_with_a_sentence(make, words):
    """Every parameter is checked at construction, with the flag named."""
    with pytest.raises(ConfigError, match=words):
        make()
