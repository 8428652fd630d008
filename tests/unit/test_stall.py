"""When a partition counts as stalled: behind its end with nothing moving."""

from __future__ import annotations

from llmrouter.core.stall import stalled_looks

IDLE = dict(busy=False, queued=False)


def test_a_partition_behind_its_end_with_nothing_moving_counts_up():
    """Committed 8, end 40, nothing in flight, queued or newly read: one more stalled look each time."""
    assert stalled_looks(committed=8, end=40, read=39, read_before=39, looks_before=1, **IDLE) == 2


def test_a_partition_caught_up_is_never_stalled():
    """Committed at the end: nothing to deliver, however quiet it is."""
    assert stalled_looks(committed=40, end=40, read=39, read_before=39, looks_before=5, **IDLE) == 0


def test_work_in_flight_queued_or_newly_read_resets_the_count():
    """Behind, but a job runs, a message waits for an agent, or something was read since: not stalled."""
    behind = dict(committed=8, end=40, looks_before=3)
    assert stalled_looks(busy=True, queued=False, read=39, read_before=39, **behind) == 0
    assert stalled_looks(busy=False, queued=True, read=39, read_before=39, **behind) == 0
    assert stalled_looks(read=20, read_before=12, **behind, **IDLE) == 0


def test_an_unknown_committed_offset_counts_as_the_start():
    """No commit yet on a partition with messages: behind from offset 0."""
    assert stalled_looks(committed=None, end=3, read=None, read_before=None, looks_before=0, **IDLE) == 1
