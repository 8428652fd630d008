"""The router's producer side: results, stream chunks, dead letters, events and
forwarded requests.

Every send awaits the broker's acknowledgement of that very record (a failed
send raises), so an agent that acks its source message after a send knows the
output is durable. Results go to the request's ``reply_to`` topic when it
names one, else to ``llm.results``.

Every record written while a span is current carries its W3C ``traceparent``
(:mod:`llmrouter.observability.tracing`): a requester finds its result's place in the trace
it started. The forward to the accepted topic carries the router's own copy
instead (``llmrouter-traceparent``), leaving upstream's header as it came.

Every record is size-checked before it is sent, key, headers and record
overhead counted (:mod:`llmrouter.core.sizes`), against the producer's own
``max_request_size`` (``kafka.max_record_bytes``): one over it raises
:class:`~llmrouter.errors.RecordTooLarge` at once, never retried. A dead
letter is the exception: it is cut to fit, its copy of the original bytes
truncated and the cut said in the letter (:func:`~llmrouter.wire.dead_letters.fit_letter`).
"""

from __future__ import annotations

from typing import Any

import faust

from llmrouter.errors import RecordTooLarge
from llmrouter.wire.codec import Codec
from llmrouter.wire.dead_letters import fit_letter
from llmrouter.wire.envelope import Origin
from llmrouter.observability.metrics import Metrics
from llmrouter.topics import Topics
from llmrouter.observability.tracing import forward_headers, trace_headers
from llmrouter.runtime.clock import wall_ms
from llmrouter.runtime.writes import check_record, producer_limit

Header = tuple[str, bytes | None]

REPLAY_HEADER = "llmrouter-replay"


class Publisher:
    def __init__(self, app: faust.App, topics: Topics, codec: Codec, metrics: Metrics) -> None:
        self._app = app
        self._topics = topics
        self._codec = codec
        self._metrics = metrics
        self.results_topic = topics.results.get_topic_name()
        self.max_record_bytes = producer_limit(app)

    def encode_result(self, record: dict[str, Any]) -> bytes:
        """An LLMResult in the configured output encoding."""
        return self._codec.encode("LLMResult", record)

    async def result(self, record: dict[str, Any], *, reply_to: str | None = None) -> None:
        """Encode and send one LLMResult keyed by request_id."""
        await self.send_result(record["request_id"], self.encode_result(record), reply_to=reply_to)

    async def send_result(self, request_id: str, data: bytes, *, reply_to: str | None = None,
                          replay: bool = False) -> None:
        """Send an encoded LLMResult; ``replay`` marks a re-emitted stored result."""
        headers = [(REPLAY_HEADER, b"1")] if replay else None
        await self._send(reply_to or self.results_topic, request_id.encode(), data, headers)

    async def chunk(
        self, request_id: str, seq: int, delta: str, final: bool, provider: str | None, restart: bool = False,
    ) -> None:
        record = {"request_id": request_id, "seq": seq, "delta": delta, "final": final, "provider": provider,
                  "restart": restart}
        await self._send(self._topics.stream.get_topic_name(), request_id.encode(),
                         self._codec.encode("StreamChunk", record))

    async def dead_letter(
        self, *, reason: str, code: str, origin: Origin | None, request_id: str | None = None, attempts: int = 0,
    ) -> None:
        """Keep what could not be served: the upstream message as it arrived (bytes, key, headers,
        coordinates), the reason and the error code."""
        record: dict[str, Any] = {
            "request_id": request_id, "source_topic": "", "source_partition": -1, "source_offset": -1,
            "original_key": None, "original_value": None, "headers": [], "reason": reason,
            "error_code": code, "attempts": attempts, "failed_at_ms": wall_ms(),
        }
        if origin is not None:
            record.update(
                source_topic=origin.topic, source_partition=origin.partition, source_offset=origin.offset,
                original_key=origin.key, original_value=origin.value,
                headers=[{"key": k, "value": v} for k, v in origin.headers],
            )
        key = request_id.encode() if request_id else None
        headers = trace_headers()
        data, marks = fit_letter(record, encode=lambda r: self._codec.encode("DeadLetter", r), key=key,
                                 headers=headers, limit=self.max_record_bytes)
        await self._send(self._topics.dlq.get_topic_name(), key, data, headers + marks, traced=False)
        self._metrics.dlq_total.labels(code).inc()

    async def forward(self, topic: str, origin: Origin, request_id: str) -> None:
        """Hand a validated request to the answer stage: upstream's bytes, keyed by request_id."""
        await self._send(*forward_record(topic, origin, request_id), traced=False)

    async def event(self, entity: str, kind: str, data: dict[str, str]) -> None:
        """An audit-trail entry on llm.events, keyed by entity."""
        record = {"entity": entity, "kind": kind, "data": data, "at_ms": wall_ms()}
        await self._send(self._topics.events.get_topic_name(), entity.encode(), self._codec.encode("Event", record))

    async def alert(self, record: dict[str, Any]) -> None:
        """An ``Alert`` on llm.alerts, keyed by rule name (llmrouter/alerting/owner.py decides it)."""
        await self._send(self._topics.alerts.get_topic_name(), record["rule"].encode(),
                         self._codec.encode("Alert", record))

    def fits(self, key: bytes | None, value: bytes, headers: list[Header] | None = None) -> bool:
        """Whether a record sent now (the current span's trace headers added) is within the producer's limit."""
        try:
            check_record(key, value, (headers or []) + trace_headers(), limit=self.max_record_bytes, what="")
        except RecordTooLarge:
            return False
        return True

    async def _send(self, topic: str, key: bytes | None, value: bytes,
                    headers: list[Header] | None = None, *, traced: bool = True) -> None:
        if traced:
            headers = (headers or []) + trace_headers()
        check_record(key, value, headers or [], limit=self.max_record_bytes, what=f"a record for {topic}")
        await self._app.producer.send_and_wait(topic, key, value, None, None, headers or None)


def forward_record(topic: str, origin: Origin, request_id: str) -> tuple[str, bytes, bytes, list[Header]]:
    """(topic, key, value, headers) of the forward of ``origin`` to the answer stage, as
    :meth:`Publisher.forward` sends it now (intake measures it with these before forwarding)."""
    return topic, request_id.encode(), origin.value, origin.forward_headers() + forward_headers()
