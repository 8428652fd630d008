"""The result producer: results, stream chunks and dead letters.

Every send waits for the broker's acknowledgement, so an agent that acks its
source message after a send knows the output is durable. Results go to the
request's ``reply_to`` topic when it names one, else to ``llm.results``.
"""

from __future__ import annotations

import time
from typing import Any

import faust

from llmrouter.codec import Codec
from llmrouter.metrics import Metrics
from llmrouter.topics import Topics

REPLAY_HEADER = "llmrouter-replay"


class Publisher:
    def __init__(self, app: faust.App, topics: Topics, codec: Codec, metrics: Metrics) -> None:
        self._app = app
        self._topics = topics
        self._codec = codec
        self._metrics = metrics

    async def result(self, record: dict[str, Any], *, reply_to: str | None = None, replay: bool = False) -> None:
        """Send one LLMResult keyed by request_id; ``replay`` marks a re-emitted stored result."""
        headers = [(REPLAY_HEADER, b"1")] if replay else []
        topic = reply_to or self._topics.results.get_topic_name()
        await self._send(topic, record["request_id"].encode(), self._codec.encode("LLMResult", record), headers)

    async def chunk(
        self, request_id: str, seq: int, delta: str, final: bool, provider: str | None, restart: bool = False,
    ) -> None:
        record = {"request_id": request_id, "seq": seq, "delta": delta, "final": final, "provider": provider,
                  "restart": restart}
        await self._send(self._topics.stream.get_topic_name(), request_id.encode(),
                         self._codec.encode("StreamChunk", record))

    async def dead_letter(
        self, *, reason: str, code: str, message: faust.types.Message | None = None, request_id: str | None = None,
        source_topic: str = "", original_value: bytes | None = None, attempts: int = 0,
    ) -> None:
        """Keep what could not be served, with the original bytes and headers when there is a source message."""
        record: dict[str, Any] = {
            "request_id": request_id, "source_topic": source_topic, "source_partition": -1, "source_offset": -1,
            "original_key": None, "original_value": original_value, "headers": [], "reason": reason,
            "error_code": code, "attempts": attempts, "failed_at_ms": now_ms(),
        }
        if message is not None:
            record.update(
                source_topic=message.topic, source_partition=message.partition, source_offset=message.offset,
                original_key=message.key, original_value=message.value,
                headers=[{"key": k, "value": v} for k, v in _headers(message)],
            )
        key = request_id.encode() if request_id else None
        await self._send(self._topics.dlq.get_topic_name(), key, self._codec.encode("DeadLetter", record))
        self._metrics.dlq_total.labels(code).inc()

    async def event(self, entity: str, kind: str, data: dict[str, str]) -> None:
        """An audit-trail entry on llm.events, keyed by entity."""
        record = {"entity": entity, "kind": kind, "data": data, "at_ms": now_ms()}
        await self._send(self._topics.events.get_topic_name(), entity.encode(), self._codec.encode("Event", record))

    async def _send(self, topic: str, key: bytes | None, value: bytes, headers: list | None = None) -> None:
        await self._app.producer.send_and_wait(topic, key, value, None, None, headers or None)


def now_ms() -> int:
    return int(time.time() * 1000)


def _headers(message: faust.types.Message) -> list[tuple[str, bytes | None]]:
    headers = message.headers or []
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), v if v is None or isinstance(v, bytes) else str(v).encode()) for k, v in items]
