"""When a partition counts as stalled (see :mod:`llmrouter.runtime.stall_watch`)."""

from __future__ import annotations


def stalled_looks(*, committed: int | None, end: int | None, busy: bool, queued: bool, read: int | None,
                  read_before: int | None, looks_before: int) -> int:
    """How many looks in a row a partition has looked stalled, this one included.

    Stalled: the committed offset is behind the partition's end, nothing of it is
    in flight or queued for an agent, and nothing was delivered since the last look
    (the last offset read is unchanged). Any other look starts the count again.
    """
    behind = (committed or 0) < (end or 0)
    if behind and not busy and not queued and read == read_before:
        return looks_before + 1
    return 0
