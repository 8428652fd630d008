"""The priority bulkhead: a cap on concurrent calls, the most urgent waiter first."""

from __future__ import annotations

import asyncio

import pytest

from llmrouter.dispatch.bulkhead import PriorityBulkhead


async def test_calls_beyond_capacity_wait_and_the_most_urgent_goes_first():
    """With the slot taken, waiters of priority 3, 2, 0, 2 are served 0, 2, 2, 3 (ties by arrival)."""
    bulkhead = PriorityBulkhead(1)
    order: list[str] = []
    hold = asyncio.Event()

    async def call(name: str, priority: int, wait: asyncio.Event | None = None) -> None:
        async with bulkhead.slot(priority):
            order.append(name)
            if wait:
                await wait.wait()

    first = asyncio.create_task(call("first", 3, hold))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(call(name, p)) for name, p in
               (("low", 3), ("normal-a", 2), ("critical", 0), ("normal-b", 2))]
    await asyncio.sleep(0)
    assert bulkhead.in_use == 1 and bulkhead.waiting == 4
    hold.set()
    await asyncio.gather(first, *waiters)
    assert order == ["first", "critical", "normal-a", "normal-b", "low"]
    assert bulkhead.in_use == 0 and bulkhead.waiting == 0


async def test_up_to_capacity_calls_run_at_once():
    """Capacity 3: three holders at the same time, the fourth waits."""
    bulkhead = PriorityBulkhead(3)
    release = asyncio.Event()
    running = 0
    peak = 0

    async def call() -> None:
        nonlocal running, peak
        async with bulkhead.slot(1):
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(call()) for _ in range(4)]
    await asyncio.sleep(0)
    assert (bulkhead.in_use, bulkhead.waiting) == (3, 1)
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 3 and bulkhead.in_use == 0


async def test_a_waiter_that_times_out_leaves_without_taking_a_slot():
    """A cancelled waiter is skipped; the slot goes to the next one."""
    bulkhead = PriorityBulkhead(1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with bulkhead.slot(0):
            await hold.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            async with bulkhead.slot(0):
                pass
    later = asyncio.create_task(_enter(bulkhead, 1))
    await asyncio.sleep(0)
    hold.set()
    await asyncio.gather(task, later)
    assert later.result() is True and bulkhead.in_use == 0 and bulkhead.waiting == 0


async def _enter(bulkhead: PriorityBulkhead, priority: int) -> bool:
    async with bulkhead.slot(priority):
        return True


def test_a_bulkhead_needs_room_for_one_call():
    """Capacity 0 is refused with a sentence."""
    with pytest.raises(ValueError, match="at least 1"):
        PriorityBulkhead(0)


async def test_the_waiters_are_counted_by_priority_and_one_that_gave_up_is_not():
    """Slot held; waiters of priority 3, 3, 2 and a 0 that timed out: {3: 2, 2: 1}."""
    bulkhead = PriorityBulkhead(1)
    hold = asyncio.Event()

    async def call(priority: int) -> None:
        async with bulkhead.slot(priority):
            await hold.wait()

    holder = asyncio.create_task(call(3))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(call(p)) for p in (3, 3, 2)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await call(0)
    assert bulkhead.waiting_by_priority() == {3: 2, 2: 1}
    hold.set()
    await asyncio.gather(holder, *waiters)
    assert bulkhead.waiting_by_priority() == {}
