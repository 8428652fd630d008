"""faust's Kafka transport with two fixes the router's correctness stands on.

* :class:`SafeCommitConsumer` commits a partition only past offsets that are
  done (acked) or proven absent, walking from the committed offset
  (:class:`llmrouter.core.offsets.PartitionLedger`), whatever order
  concurrent handlers finish in and whatever faust drops between the fetch
  and the agent. faust 0.15.3 alone commits past a message still in flight
  (faust issue #606). It also ignores acks of messages delivered in an
  earlier consumer generation: faust acks events it skips after a rebalance,
  and those are delivered again, so their offsets are not done.
* :meth:`SafeCommitConsumer.hold` stops fetching whole topics (the priority
  backpressure, :mod:`llmrouter.runtime.backpressure`) in a way faust's own
  rebalances, recoveries and buffer flow control cannot undo.
* :class:`ShortFetchWaitThread` lets the broker hold a fetch for ``worker.fetch_max_wait_ms``
  instead of faust's fixed 1.5 s, which could delay every record by up to that much, and reads
  ``read_committed`` (faust reads ``read_uncommitted`` outside its exactly-once mode): a request an
  upstream transaction aborted is never answered nor paid for.
* :class:`IdempotentProducer` turns on Kafka's idempotent producer (acks=all),
  which faust enables only in its experimental exactly-once mode, so a send
  retried by the client never writes a record twice.

These override private methods of faust-streaming 0.15.3 (pinned in
pyproject.toml); ``tests/unit/test_safe_commit.py`` drives the real faust
consumer class, so an upgrade that changes them fails there first.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from llmrouter.core.offsets import PartitionLedger
from llmrouter.runtime.writes import CheckedProducerBuffer

ISOLATION_LEVEL = "read_committed"  # faust reads read_uncommitted unless in exactly-once mode
ALL_HELD_WAIT_S = 0.1  # when every partition faust would fetch is held, look again this soon


class SafeCommitConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, committing only what is done.

    ``before_revoke`` runs when partitions are revoked, before faust forgets
    their acks and committed offsets: the app drains their work and commits
    what finished there (:class:`llmrouter.runtime.faust_app.RouterApp`).
    """

    before_revoke: Callable[[set[TP]], Awaitable[None]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ledgers: defaultdict[TP, PartitionLedger] = defaultdict(PartitionLedger)
        self._held_topics: frozenset[str] = frozenset()

    def _new_consumer_thread(self) -> ShortFetchWaitThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    def hold(self, topics: Iterable[str]) -> None:
        """Fetch nothing more from any partition of ``topics`` this worker owns, now or after any
        rebalance, until they are held no longer (``hold`` of another set, or of none).

        Not faust's ``pause_partitions``: faust resumes every assigned partition itself, at the
        end of each recovery (which runs after the assignment listeners, so a pause re-applied
        there is undone moments later) and when a full stream buffer drains (``on_buffer_drop``).
        A hold is kept here, by topic, and applied to every fetch, so it outlives all of that and
        covers partitions assigned later. What was fetched before stays in faust's buffers; records
        aiokafka prefetched for a held partition wait there, as for a paused one, and come next.
        """
        self._held_topics = frozenset(topics)

    def held_partitions(self) -> set[TP]:
        """The partitions this worker owns that a hold keeps from being fetched."""
        if not self._held_topics:
            return set()
        return {tp for tp in self.assignment() if tp.topic in self._held_topics}

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Mapping[TP, list[Any]]:
        if self._held_topics and active_partitions:
            active_partitions = {tp for tp in active_partitions if tp.topic not in self._held_topics}
            if not active_partitions:  # aiokafka reads no partitions as "every partition"
                await asyncio.sleep(min(timeout, ALL_HELD_WAIT_S))
                return {}
        records = await super()._getmany(active_partitions, timeout)
        for tp, batch in records.items():
            self._ledgers[tp].on_fetched(record.offset for record in batch)
        return records

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        """Seek every source partition to its committed offset, 0 and none included.

        aiokafka's ``seek_to_committed`` seeks only to a committed offset above 0: a partition
        committed at 0 (every partition of a new group that was empty when it was seeded) or not at
        all keeps its fetch position. faust relies on this seek to fetch again the batch it dropped
        when a seek raced its fetcher, so there the batch was never fetched again, and the ledger,
        told the position was the committed offset, took the next fetched offset for proof that the
        dropped ones did not exist: the commit passed them, and they were lost.

        Changelog partitions are left as aiokafka leaves them: the group never commits them (faust
        keeps a table's offsets itself), so "nothing committed" would send a standby's partitions to
        their earliest offset at every reseek, days of changelog read again.
        """
        committed = await super().seek_to_committed()
        sources = {tp: offset for tp, offset in committed.items() if not self._is_changelog_tp(tp)}
        targets = reseek_targets(sources, await self._earliest_of(sources))
        for tp, offset in targets.items():
            await self._seek(tp, offset)
        return committed

    async def seek_to_committed_only(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Seek just ``tps`` back to the group's committed offsets (the earliest where none is): the
        stall watch's move, which leaves every other partition at its fetch position (a seek of all
        would deliver again everything read there since its last commit)."""
        committed = await self._thread.committed_offsets(set(tps))
        targets = {tp: offset for tp, offset in committed.items() if offset is not None}
        targets.update(await self._earliest_of(committed))
        for tp, offset in targets.items():
            await self.seek(tp, offset)
        return targets

    def stable_end(self, tp: TP) -> int | None:
        """Where ``tp`` can be read up to: the last stable offset (read_committed reads nothing past an
        open transaction), or the high watermark where the broker gave none."""
        lso = self._thread.last_stable_offset(tp)
        return lso if lso is not None and lso >= 0 else self.highwater(tp)

    async def _earliest_of(self, committed: Mapping[TP, int | None]) -> Mapping[TP, int]:
        uncommitted = [tp for tp, offset in committed.items() if offset is None]
        return await self.earliest_offsets(*uncommitted) if uncommitted else {}

    async def perform_seek(self) -> None:
        await super().perform_seek()
        for tp, offset in list(self._read_offset.items()):  # faust set it to each committed offset
            self._ledgers[tp].on_seek(offset)

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._ledgers[partition].on_seek(offset)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        if revoked and self.before_revoke is not None and not self.app.should_stop:
            await self.before_revoke(set(revoked))
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._ledgers.pop(tp, None)

    def ack(self, message: Message) -> bool:
        if message.generation_id != self.app.consumer_generation_id:
            # Delivered before the last rebalance: it will be delivered again (and
            # acked then); counting it now could commit past its new delivery.
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return super().ack(message)

    def _new_offset(self, tp: TP) -> int | None:
        acked_index = self._acked_index[tp]
        point = self._ledgers[tp].commit_point(acked_index, self._committed_offset[tp])
        if point is not None:
            acked = self._acked[tp]
            done = [offset for offset in acked if offset < point]
            acked[:] = [offset for offset in acked if offset >= point]
            acked_index.difference_update(done)
        return point

    def partitions_in_flight(self) -> set[TP]:
        """The partitions with a message delivered in this generation and not acked yet."""
        generation = self.app.consumer_generation_id
        return {m.tp for m in list(self._unacked_messages) if not m.acked and m.generation_id == generation}


def reseek_targets(committed: Mapping[TP, int | None], earliest: Mapping[TP, int]) -> dict[TP, int]:
    """The seeks aiokafka's ``seek_to_committed`` leaves out: to 0 where 0 is committed, to the
    earliest offset where nothing is (the group's ``auto_offset_reset`` is earliest)."""
    targets = {tp: 0 for tp, offset in committed.items() if offset == 0}
    targets.update({tp: earliest.get(tp, 0) for tp, offset in committed.items() if offset is None})
    return targets


class ShortFetchWaitThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread with the broker's fetch wait set by the app (``RouterApp.fetch_max_wait_ms``),
    reading committed transactions only (``ISOLATION_LEVEL``).

    faust builds the worker's aiokafka consumer with ``fetch_max_wait_ms=1500``, and aiokafka sends one
    fetch at a time per broker, leaving out the partitions whose last fetched records are not consumed
    yet. When every busy partition is left out so (the agents are still on their records), the fetch
    holds only idle partitions and the broker keeps it the full wait: the busy partitions' next records
    come up to 1.5 s late, and the next fetch finds them backed up again. Under steady load a worker
    could stay in that state: cache hits at 500 req/s answered 1.2-1.4 s late, in 5 runs of 9, with the
    worker under half a core.
    """

    async def committed_offsets(self, tps: set[TP]) -> dict[TP, int | None]:
        """The group's committed offset of each of ``tps`` (None: nothing committed), asked of the broker."""
        consumer = self._ensure_consumer()
        return {tp: await self.call_thread(consumer.committed, tp) for tp in tps}

    def last_stable_offset(self, tp: TP) -> int | None:
        """aiokafka's last stable offset of ``tp`` (-1 under read_uncommitted, None before any fetch)."""
        return self._ensure_consumer().last_stable_offset(tp)

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = ISOLATION_LEVEL  # read when the consumer starts and builds its fetcher
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)  # read when the consumer starts and builds its fetcher
        return consumer


class IdempotentProducer(faust_aiokafka.Producer):
    """faust's aiokafka producer with Kafka's idempotence on (and so acks=all), whose buffer hands a failed
    send to its future instead of crashing (:class:`~llmrouter.runtime.writes.CheckedProducerBuffer`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = CheckedProducerBuffer(loop=self.loop, beacon=self.beacon)
        self.buffer.app = self.app

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class RouterTransport(faust_aiokafka.Transport):
    Consumer = SafeCommitConsumer
    Producer = IdempotentProducer
