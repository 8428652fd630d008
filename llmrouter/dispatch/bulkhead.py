"""Bulkhead (specification F021): at most ``capacity`` calls to one provider at
once, and when callers wait, the most urgent goes first.

Priority 0 is the most urgent (critical); equal priorities are served in
arrival order. A waiter that gives up (timeout, cancellation) leaves the
queue without taking a slot. No I/O: only asyncio futures.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class PriorityBulkhead:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a bulkhead needs a capacity of at least 1, not {capacity}")
        self.capacity = capacity
        self.in_use = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, future in self._waiters if not future.done())

    def waiting_by_priority(self) -> dict[int, int]:
        """The callers waiting for a slot now, counted by priority (the backpressure's signal)."""
        counts: dict[int, int] = {}
        for priority, _, future in self._waiters:
            if not future.done():
                counts[priority] = counts.get(priority, 0) + 1
        return counts

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        """Hold one of the ``capacity`` slots for the body of the ``async with``."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self.in_use < self.capacity and not self.waiting:
            self.in_use += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), future))
        try:
            await future  # the releaser counted the slot for us
        except BaseException:
            if future.done() and not future.cancelled():
                self._release()  # granted, but we are leaving anyway: pass it on
            else:
                future.cancel()
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot moves to this waiter; in_use stays
                return
        self.in_use -= 1
