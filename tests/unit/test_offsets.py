"""The commit point of a partition never passes work that is not done."""

from __future__ import annotations

from llmrouter.core.offsets import commit_point


def test_all_done_commits_past_the_last_acked_offset():
    """Nothing in flight: commit the offset after the highest acked one (the next to read)."""
    assert commit_point([3, 4, 5], in_flight_min=None, committed=3) == 6


def test_a_slow_message_at_the_head_holds_the_commit_at_itself():
    """Offset 0 in flight, 1..60 done: the commit stays at 0, so a restart reads 0 again."""
    assert commit_point(list(range(1, 61)), in_flight_min=0, committed=None) == 0
    assert commit_point(list(range(1, 61)), in_flight_min=0, committed=0) is None


def test_a_single_in_flight_message_right_after_the_committed_offset_is_not_passed():
    """faust's off-by-one: committed 100, 100 in flight, 101..104 acked -> nothing to commit."""
    assert commit_point([101, 102, 103, 104], in_flight_min=100, committed=100) is None


def test_an_isolated_in_flight_message_in_the_middle_caps_the_commit():
    """Done 10..14 and 16..20, 15 in flight: commit up to 15 (exclusive), not 21."""
    assert commit_point([10, 11, 12, 13, 14, 16, 17, 18, 19, 20], in_flight_min=15, committed=10) == 15


def test_offsets_that_do_not_exist_are_stepped_over():
    """A gap (compaction, transaction markers) below the highest acked offset holds nothing back."""
    assert commit_point([7, 12], in_flight_min=None, committed=5) == 13


def test_nothing_new_to_commit_gives_none():
    """A point at or below the committed offset is not a commit."""
    assert commit_point([], in_flight_min=None, committed=4) is None
    assert commit_point([4], in_flight_min=4, committed=4) is None
    assert commit_point([2], in_flight_min=None, committed=9) is None
