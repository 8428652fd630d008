"""The commit point of a partition never passes work that is not done."""

from __future__ import annotations

from llmrouter.core.offsets import PartitionLedger


def ledger(seek: int | None, *fetched: int) -> PartitionLedger:
    ledger = PartitionLedger()
    ledger.on_seek(seek)
    ledger.on_fetched(fetched)
    return ledger


def test_all_done_commits_past_the_last_acked_offset():
    """Nothing in flight: commit the offset after the highest acked one (the next to read)."""
    assert ledger(3, 3, 4, 5).commit_point({3, 4, 5}, committed=3) == 6


def test_a_slow_message_at_the_head_holds_the_commit_at_itself():
    """Offset 0 in flight, 1..60 done: nothing to commit, so a restart reads 0 again."""
    assert ledger(None, *range(61)).commit_point(set(range(1, 61)), committed=None) is None


def test_a_single_in_flight_message_right_after_the_committed_offset_is_not_passed():
    """faust's off-by-one: committed 100, 100 in flight, 101..104 acked -> nothing to commit."""
    assert ledger(100, *range(100, 105)).commit_point({101, 102, 103, 104}, committed=100) is None


def test_an_unfinished_message_in_the_middle_caps_the_commit():
    """Done 10..14 and 16..20, 15 not done (in flight, or dropped before an agent got it): commit 15."""
    done = set(range(10, 15)) | set(range(16, 21))
    assert ledger(10, *range(10, 21)).commit_point(done, committed=10) == 15


def test_offsets_the_fetcher_proved_absent_are_stepped_over():
    """7 then 12 fetched in a row (8..11 are transaction markers or compacted away): 7 and 12 done -> 13."""
    assert ledger(5, 5, 6, 7, 12).commit_point({5, 6, 7, 12}, committed=5) == 13


def test_a_committed_offset_deleted_by_retention_is_stepped_over():
    """Committed 100, the log now starts at 150: the first fetch proves 100..149 absent."""
    assert ledger(100, 150, 151).commit_point({150, 151}, committed=100) == 152


def test_a_seek_back_does_not_count_as_a_gap():
    """Fetched 0..9, sought back to 3, fetched 3..5 again: no offset is taken for absent."""
    lg = ledger(0, *range(10))
    lg.on_seek(3)
    lg.on_fetched([3, 4, 5])
    assert lg.commit_point({0, 1, 2, 4, 5}, committed=0) == 3


def test_without_a_committed_offset_the_walk_starts_at_the_first_fetched():
    """No commit yet, the log starts at 40: 40..42 done -> 43."""
    assert ledger(None, 40, 41, 42).commit_point({40, 41, 42}, committed=None) == 43


def test_nothing_new_to_commit_gives_none():
    """A point at the committed offset is no progress."""
    assert ledger(4, 4).commit_point(set(), committed=4) is None
    assert PartitionLedger().commit_point({1, 2}, committed=None) is None


def test_a_batch_fetched_before_a_second_seek_is_never_taken_for_absent():
    """faust sought to 2, fetched 2..13, dropped that batch and sought to 2 again, and the fetcher went on at
    14: 2..13 were fetched, so they exist; the walk stops at the first of them not done (and the stall watch
    fetches them again) instead of passing them. This lost requests after a worker was SIGKILLed."""
    lg = ledger(2, *range(2, 14))
    lg.on_seek(2)
    lg.on_fetched(range(14, 18))
    assert lg.commit_point({2, 3, 4, 5, 6} | set(range(14, 18)), committed=2) == 7
    assert lg.commit_point(set(range(2, 18)), committed=2) == 18


def test_a_gap_past_what_was_ever_fetched_is_still_proven_absent():
    """Fetched 0..9, sought back to 3, then the fetcher jumps to 15: 10..14 were never seen, so absent."""
    lg = ledger(0, *range(10))
    lg.on_seek(3)
    lg.on_fetched([15])
    assert lg.commit_point(set(range(10)) | {15}, committed=0) == 16
