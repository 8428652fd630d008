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
from aiokafka.errors import ConsumerStoppedError

log = structlog.get_logger("llmrouter.registry")

Handler = Callable[[bytes | None, bytes | None, int], Awaitable[None]]  # (key, value, offset)
# with_headers=True: (key, value, offset, headers), headers as (name, value) pairs (the registry's signatures)
HeadersHandler = Callable[[bytes | None, bytes | None, int, tuple[tuple[str, bytes | None], ...]], Awaitable[None]]


class CompactedTopicReader:
    def __init__(self, bootstrap_servers: str, topic: str, *, with_headers: bool = False) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._with_headers = with_headers
        self._consumer: AIOKafkaConsumer | None = None  # made in start(): aiokafka wants a running loop
        self._partitions: list[TopicPartition] = []

    async def start(self, *, timeout_s: float = 10.0) -> None:
        """Subscribe with no group (every partition is ours) and wait for the assignment."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest")  # no group, no committed offsets: always from the beginning
        await self._consumer.start()
        self._consumer.subscribe([self._topic])
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                log.warning("registry_topic_missing", topic=self._topic,
                            hint="run `llmrouter topics create`; registrations are followed once it exists")
                return
            await asyncio.sleep(0.05)  # the assignment comes with the next metadata answer
        self._partitions = sorted(self._consumer.assignment())

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def read_to_end(self, handler: Handler | HeadersHandler, *, timeout_s: float) -> bool:
        """Hand every record up to the current end to ``handler``; False if that took over ``timeout_s``."""
        if not self._partitions:
            return True
        ends = await self._consumer.end_offsets(self._partitions)
        try:
            async with asyncio.timeout(timeout_s):
                while await self._behind(ends):
                    await self._read_batch(handler)
        except TimeoutError:
            return False
        return True

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return True
        return False

    async def follow(self, handler: Handler | HeadersHandler) -> None:
        """Hand on every new record, until cancelled or stopped."""
        try:
            while True:
                await self._read_batch(handler)
        except ConsumerStoppedError:
            return

    async def _read_batch(self, handler: Handler | HeadersHandler) -> None:
        batches = await self._consumer.getmany(timeout_ms=500)
        for records in batches.values():
            for record in records:
                if self._with_headers:
                    await handler(record.key, record.value, record.offset, tuple(record.headers or ()))
                else:
                    await handler(record.key, record.value, record.offset)


async def read_whole(bootstrap_servers: str, topic: str, *, timeout_s: float = 30.0) -> dict[bytes, bytes]:
    """A compacted topic (a table's changelog) read once to its end: the last value of each key, a null value
    deleting its key. What lets any worker, or none, answer for every partition of a table."""
    rows: dict[bytes, bytes] = {}

    async def apply(key: bytes | None, value: bytes | None, offset: int) -> None:
        if key is None:
            return
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value

    reader = CompactedTopicReader(bootstrap_servers, topic)
    await reader.start()
    try:
        await reader.read_to_end(apply, timeout_s=timeout_s)
    finally:
        await reader.stop()
    return rows
