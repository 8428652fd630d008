"""Intake: decode and validate what upstream produced, one agent per priority.

A good request is re-keyed by request_id onto the internal accepted topic of
its priority (so the idempotency table is written from a stream grouped by
its key). A bad one goes to the DLQ with its original bytes and the reason;
when it names a request_id, an ``error`` result tells the requester too. The
stream never stops on bad input.
"""

from __future__ import annotations

from typing import Any

import faust
import structlog

from llmrouter.codec import Codec
from llmrouter.contract import PRIORITIES, parse_request
from llmrouter.errors import RequestError
from llmrouter.publisher import Publisher, now_ms
from llmrouter.topics import Topics

log = structlog.get_logger("llmrouter.intake")


def register(app: faust.App, topics: Topics, codec: Codec, publisher: Publisher) -> None:
    """Declare one intake agent per priority topic."""
    for priority in PRIORITIES:
        intake = Intake(priority, topics.accepted[priority], codec, publisher)
        app.agent(topics.requests[priority], name=f"accept_{priority}_requests")(intake.accept_requests)


class Intake:
    def __init__(self, priority: str, accepted: faust.TopicT, codec: Codec, publisher: Publisher) -> None:
        self.priority = priority
        self._accepted = accepted
        self._codec = codec
        self._publisher = publisher

    async def accept_requests(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            await self.accept(event.message)

    async def accept(self, message: faust.types.Message) -> None:
        decoded: dict[str, Any] = {}
        try:
            decoded = self._codec.decode("LLMRequest", message.value)
            request = parse_request(decoded, priority=self.priority, received_at_ms=now_ms())
        except RequestError as exc:
            await self._reject(message, decoded, code=exc.code, reason=str(exc))
            return
        except Exception as exc:  # agent boundary: a bug must not stop the stream
            log.exception("intake_failed", topic=message.topic, offset=message.offset)
            await self._reject(message, decoded, code="internal_error", reason=f"intake failed: {exc!r}")
            return
        await self._accepted.send(key=request.request_id.encode(), value=request.to_json())

    async def _reject(self, message: faust.types.Message, decoded: dict[str, Any], *, code: str, reason: str) -> None:
        request_id = decoded.get("request_id") if isinstance(decoded.get("request_id"), str) else None
        await self._publisher.dead_letter(reason=reason, code=code, message=message, request_id=request_id)
        log.warning("request_dead_lettered", request_id=request_id, code=code, reason=reason,
                    topic=message.topic, partition=message.partition, offset=message.offset)
        if request_id:
            reply_to = decoded.get("reply_to") if isinstance(decoded.get("reply_to"), str) else None
            await self._publisher.result({
                "request_id": request_id, "status": "error", "priority": self.priority,
                "error_code": code, "error_message": reason, "completed_at_ms": now_ms(),
            }, reply_to=reply_to)
