"""Reads a compacted topic whole on every worker (no consumer group), then
follows it: the way every worker learns every provider registration.

KAFKA.md: Faust's GlobalTable has an open bug with several workers; a topic
that every worker reads from the beginning is the dependable alternative.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

log = structlog.get_logger("llmrouter.registry")

Handler = Callable[[bytes | None, bytes | None, int], Awaitable[None]]  # (key, value, offset)


class CompactedTopicReader:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None  # made in start(): aiokafka wants a running loop
        self._partitions: list[TopicPartition] = []

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest")
        await self._consumer.start()
        await self._consumer.topics()  # fetches metadata, so the partitions are known
        numbers = self._consumer.partitions_for_topic(self._topic)
        if not numbers:
            log.warning("registry_topic_missing", topic=self._topic,
                        hint="run `llmrouter topics create`; registrations are not followed until it exists")
            return
        self._partitions = [TopicPartition(self._topic, n) for n in sorted(numbers)]
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def read_to_end(self, handler: Handler, *, timeout_s: float) -> bool:
        """Hand every record up to the current end to ``handler``; False if that took over ``timeout_s``."""
        if not self._partitions:
            return True
        ends = await self._consumer.end_offsets(self._partitions)
        try:
            async with asyncio.timeout(timeout_s):
                while any(await self._consumer.position(tp) < end for tp, end in ends.items()):
                    await self._read_batch(handler)
        except TimeoutError:
            return False
        return True

    async def follow(self, handler: Handler) -> None:
        """Hand on every new record, until cancelled."""
        if not self._partitions:
            return
        while True:
            await self._read_batch(handler)

    async def _read_batch(self, handler: Handler) -> None:
        batches = await self._consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                await handler(record.key, record.value, record.offset)
