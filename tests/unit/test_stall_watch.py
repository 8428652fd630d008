"""The stall watch's reseek and the consumer's seeks, through faust's own consumer class (no broker): the
fetcher thread is a fake that writes down where each partition was sent (issue 19, items 7 and 9)."""

from __future__ import annotations

from typing import Any

import pytest
from faust.types import TP

from llmrouter.runtime.faust_app import RouterApp
from llmrouter.runtime.stall_watch import StallWatch

TOPIC = "llm.router.accepted.normal"
TP0, TP1, TP2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)


class FetcherThread:
    """faust's consumer thread, as far as seeks go: aiokafka's seek_to_committed moves every partition with an
    offset committed above 0, the group's committed offsets are ``committed``, a partition's start is 3."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.seeks: dict[TP, int] = {}

    async def seek_to_committed(self) -> dict[TP, int | None]:
        self.seeks.update({tp: offset for tp, offset in self.committed.items() if offset})
        return dict(self.committed)

    async def committed_offsets(self, tps: Any) -> dict[TP, int | None]:
        return {tp: self.committed[tp] for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 3 for tp in tps}

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks[tp] = offset

    def assignment(self) -> set[TP]:
        return set(self.committed)

    def highwater(self, tp: TP) -> int:
        return 50

    def last_stable_offset(self, tp: TP) -> int:
        return 20  # an open transaction from 20 on


def app_with(committed: dict[TP, int | None]) -> tuple[RouterApp, FetcherThread]:
    app = RouterApp("stall-watch-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.Table("answered", default=None, partitions=3)
    thread = FetcherThread(committed)
    app.consumer._thread = thread
    return app, thread


async def test_the_stall_watch_seeks_back_only_the_stalled_partition():
    """Partition 1 stalled: it alone goes back to its committed offset; 0 and 2 keep their fetch positions
    (seeking them too would deliver again everything read since their last commit)."""
    app, thread = app_with({TP0: 40, TP1: 12, TP2: 7})
    watch = StallWatch(app, topics=lambda: [TOPIC], busy=set)
    await watch._reseek([TP1])
    assert thread.seeks == {TP1: 12}
    assert app.consumer._read_offset[TP1] == 12


async def test_a_stalled_partition_with_nothing_committed_goes_back_to_its_start():
    """No commit yet: the earliest offset (the group's auto_offset_reset), not wherever the fetcher is."""
    app, thread = app_with({TP0: 40, TP1: None})
    await StallWatch(app, topics=lambda: [TOPIC], busy=set)._reseek([TP1])
    assert thread.seeks == {TP1: 3}


@pytest.mark.parametrize("changelog_offset", [None, 0])
async def test_a_reseek_leaves_changelog_partitions_to_faust(changelog_offset):
    """faust's perform_seek seeks every assigned partition, a standby's changelog partitions included, which
    the group never commits: they are not sent to their earliest offset (days of changelog read again);
    source partitions with 0 or nothing committed are."""
    app, thread = app_with({})
    changelog = TP(app.tables["answered"].changelog_topic.get_topic_name(), 1)
    thread.committed = {TP0: 0, TP1: None, changelog: changelog_offset}
    await app.consumer.perform_seek()
    assert thread.seeks == {TP0: 0, TP1: 3}


async def test_a_partition_read_up_to_its_last_stable_offset_is_not_stalled():
    """Committed 20, high watermark 50, last stable offset 20 (an upstream transaction still open): nothing
    more can be read, so nothing is stalled; against the high watermark it would be reseeked for ever."""
    app, thread = app_with({TP0: 20})
    app.tables.recovery.completed.set()
    app.consumer._committed_offset[TP0] = 20
    app.consumer._read_offset[TP0] = 19
    watch = StallWatch(app, topics=lambda: [TOPIC], busy=set, confirm=2)
    assert [watch.stalled() for _ in range(3)] == [[], [], []]
    app.consumer._committed_offset[TP0] = 12  # behind the stable end: stalled on the second look
    assert [watch.stalled() for _ in range(2)] == [[], [TP0]]
