"""Which offset of a partition may be committed: only past what is done.

Kafka's committed offset is the *next* offset to read: after a crash the group
starts there. It must never pass a message whose work is not done (its result
durable), whatever order concurrent work finishes in, and whatever faust does
with the messages between the fetch and the agent.

A :class:`PartitionLedger` walks from the committed offset over offsets that
are acked (done) or proven absent, and stops at the first other one. Absent
means the fetcher returned a later offset right where this one should have
been (a compacted record, a transaction marker, a deleted segment): the
ledger follows the fetch positions (:meth:`on_seek`, :meth:`on_fetched`).
Anything else stops the walk: a message in flight, one not fetched yet, and
one fetched but never delivered to an agent (faust drops a fetched batch when
a seek races its fetcher; :mod:`llmrouter.runtime.stall_watch` fetches it
again).

An offset fetched once is never taken for absent afterwards. faust seeks a
partition to its committed offset twice after a rebalance (once when it is
assigned, again when recovery ends) and the second seek need not move the
fetcher back: a batch fetched between the two (2..13), then dropped by faust,
was followed by the fetcher's next records (14..) right after the seek to 2,
which read as proof that 2..13 did not exist. The commit passed them and the
requests they held were lost (two workers, one SIGKILLed mid-load).

faust 0.15.3's own rule (``Consumer._new_offset``) infers the head from the
acked run instead: it lets one in-flight message at the head through and
checks nothing while the committed offset is None or 0 (faust issue #606).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class PartitionLedger:
    """What the fetcher returned for one partition since the last seek, for the commit walk."""

    start: int | None = None  # where the walk begins when no offset is committed
    expected: int | None = None  # the offset the fetcher returns next
    absent: list[tuple[int, int]] = field(default_factory=list)  # [begin, end) proven not to exist
    fetched_to: int | None = None  # one past the highest offset ever fetched: those below it exist

    def on_seek(self, offset: int | None) -> None:
        """The fetch position moved to ``offset`` (None: unknown, the next fetched offset says)."""
        self.expected = offset
        if offset is not None:
            self.start = offset if self.start is None else min(self.start, offset)

    def on_fetched(self, offsets: Iterable[int]) -> None:
        """The fetcher returned these offsets, in order."""
        for offset in offsets:
            if self.expected is None:
                self.start = offset if self.start is None else min(self.start, offset)
            elif offset > self.expected:
                begin = max(self.expected, self.fetched_to or self.expected)  # fetched before: they exist
                if offset > begin:
                    self.absent.append((begin, offset))
            self.expected = offset + 1
            self.fetched_to = max(self.fetched_to or 0, offset + 1)

    def commit_point(self, acked: set[int], committed: int | None) -> int | None:
        """The next offset to read once everything done is counted, or None if that is no progress."""
        begin = committed if committed is not None else self.start
        if begin is None:
            return None
        point = begin
        while True:
            if point in acked:
                point += 1
                continue
            gap = next((end for start, end in self.absent if start <= point < end), None)
            if gap is None:
                break
            point = gap
        if point == begin:
            return None
        self.absent = [(start, end) for start, end in self.absent if end > point]
        return point
