"""A small client of the router's Kafka contract: produce requests, wait for
their results (and stream chunks). Used by ``llmrouter send``, the demo and
the tests; upstream systems can use it or speak the contract themselves.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from llmrouter.wire.codec import Codec, encode_json
from llmrouter.errors import RouterError
from llmrouter.runtime.publisher import REPLAY_HEADER
from llmrouter.config.settings import Settings
from llmrouter.topics import DLQ, REQUESTS, RESULTS, STREAM
from llmrouter.runtime.clock import wall_ms


@dataclass
class Received:
    """A result as it arrived: the decoded record, whether it was a replay, its Kafka headers."""

    record: dict[str, Any]
    replay: bool
    raw: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Collected:
    results: dict[str, list[Received]] = field(default_factory=dict)
    chunks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


class RouterClient:
    def __init__(self, settings: Settings, *, results_topic: str | None = None) -> None:
        self._settings = settings
        self._codec = Codec()
        self._results_topic = results_topic or settings.topic(RESULTS)
        self._stream_topic = settings.topic(STREAM)
        self._dlq_topic = settings.topic(DLQ)
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.collected = Collected()

    async def __aenter__(self) -> RouterClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, and start listening for results from now on (before anything is sent)."""
        try:
            await self._connect()
        except BaseException:
            await self.stop()
            raise

    async def _connect(self) -> None:
        bootstrap = self._settings.kafka.bootstrap_servers
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await self._consumer.start()
        partitions = []
        for topic in (self._results_topic, self._stream_topic, self._dlq_topic):
            for p in await self._partitions(topic):
                partitions.append(TopicPartition(topic, p))
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, not at the first poll
            await self._consumer.position(tp)

    async def stop(self) -> None:
        if self._producer:
            await self._producer.stop()
        if self._consumer:
            await self._consumer.stop()

    async def send(
        self, request: dict[str, Any], *, priority: str = "normal", encoding: str = "json", key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> str:
        """Produce one LLMRequest; fills in request_id and created_at_ms when missing; returns the request_id.
        ``headers``: Kafka headers sent with it (a W3C ``traceparent``, say)."""
        request = {"request_id": str(uuid.uuid4()), "created_at_ms": wall_ms(), **request}
        value = self._codec.encode_avro("LLMRequest", request) if encoding == "avro" else encode_json(request)
        await self.send_raw(value, priority=priority, key=key, headers=headers)
        return request["request_id"]

    async def send_raw(self, value: bytes, *, priority: str = "normal", key: bytes | None = None,
                       headers: list[tuple[str, bytes]] | None = None) -> None:
        """Produce bytes as they are (for bad-input tests and replays)."""
        assert self._producer is not None, "start() the client first"
        await self._producer.send_and_wait(self._settings.topic(REQUESTS.format(priority=priority)), value, key=key,
                                           headers=headers)

    async def wait_for(
        self, request_ids: Iterable[str], *, timeout_s: float, results_each: int = 1, dead_letters: int = 0,
        on_chunk: Callable[[dict[str, Any]], None] | None = None,
    ) -> Collected:
        """Read until every id in ``request_ids`` has ``results_each`` results and at least
        ``dead_letters`` dead letters arrived; raise TimeoutError after ``timeout_s``."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout_s

        def missing() -> list[str]:
            return sorted(rid for rid in wanted if len(self.collected.results.get(rid, ())) < results_each)

        while missing() or len(self.collected.dead_letters) < dead_letters:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"within {timeout_s}s: {len(missing())} request(s) short of {results_each} "
                                   f"result(s) {missing()[:5]}, {len(self.collected.dead_letters)} dead letter(s)")
            await self.poll(min(left, 1.0), on_chunk=on_chunk)
        return self.collected

    async def read_to_end(self, timeout_s: float = 30.0) -> Collected:
        """Take in everything written so far: read until each partition's position reaches
        the end offset it had when this was called."""
        assert self._consumer is not None, "start() the client first"
        partitions = list(self._consumer.assignment())
        end = await self._consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while any([await self._consumer.position(tp) < end[tp] for tp in partitions]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read to the end of {sorted({tp.topic for tp in partitions})} "
                                   f"within {timeout_s}s")
            await self.poll(0.5)
        return self.collected

    async def poll(self, timeout_s: float, *, on_chunk: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Take whatever arrived within ``timeout_s`` into :attr:`collected`."""
        assert self._consumer is not None, "start() the client first"
        batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000))
        for tp, messages in batches.items():
            for message in messages:
                if tp.topic == self._stream_topic:
                    chunk = self._codec.decode("StreamChunk", message.value)
                    self.collected.chunks.setdefault(chunk["request_id"], []).append(chunk)
                    if on_chunk:
                        on_chunk(chunk)
                    continue
                if tp.topic == self._dlq_topic:
                    self.collected.dead_letters.append(self._codec.decode("DeadLetter", message.value))
                    continue
                record = self._codec.decode("LLMResult", message.value)
                replay = any(k == REPLAY_HEADER for k, _ in (message.headers or ()))
                self.collected.results.setdefault(record["request_id"], []).append(
                    Received(record=record, replay=replay, raw=message.value, headers=tuple(message.headers or ())))

    async def _partitions(self, topic: str) -> list[int]:
        assert self._producer is not None
        try:
            return sorted(await asyncio.wait_for(self._producer.partitions_for(topic), timeout=10))
        except (TimeoutError, KafkaError) as exc:
            raise RouterError(
                f"topic {topic} is not there: start a worker or run `llmrouter topics create` first") from exc
