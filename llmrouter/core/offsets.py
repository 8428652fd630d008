"""Which offset of a partition may be committed, given what is done and what is not.

Kafka's committed offset is the *next* offset to read: after a crash the group
starts there. It must therefore never pass a message whose work is not done
(its result durable), whatever order concurrent work finishes in.

Within one consumer generation a partition's messages are delivered in offset
order, and every delivered message is either acked (done) or in flight. So
every delivered offset below the smallest in-flight one is done, and offsets
never delivered below the highest acked one do not exist (compaction,
transaction markers, retention). The commit point is therefore the highest
acked offset + 1, held back to the smallest offset still in flight.

faust 0.15.3's own rule (``Consumer._new_offset``) infers the head from the
acked run instead: it lets one in-flight message at the head through and
checks nothing while the committed offset is None or 0 (faust issue #606).
"""

from __future__ import annotations

from collections.abc import Sequence


def commit_point(acked: Sequence[int], *, in_flight_min: int | None, committed: int | None) -> int | None:
    """The offset to commit for a partition, or None when there is nothing new to commit.

    ``acked``: offsets done in the current generation, sorted ascending;
    ``in_flight_min``: the smallest offset delivered in the current generation and not
    done yet (None when nothing is in flight); ``committed``: the offset committed
    last (None when unknown).
    """
    if not acked:
        return None
    point = acked[-1] + 1
    if in_flight_min is not None:
        point = min(point, in_flight_min)
    if committed is not None and point <= committed:
        return None
    return point
