"""The wall clock in milliseconds since the epoch: the one place the router reads it for record times.

Records carry wall-clock times (``at_ms``, ``created_at_ms``, ``failed_at_ms``)
because other processes and machines read them; durations and deadlines use
the monotonic clock instead. Pure logic in :mod:`llmrouter.core` never calls
this: it takes the time as an argument, and callers pass :func:`wall_ms` (or a
test's clock) in.
"""

from __future__ import annotations

import time

__all__ = ["wall_ms"]


def wall_ms() -> int:
    """Now, in whole milliseconds since the Unix epoch."""
    return int(time.time() * 1000)
