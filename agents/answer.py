"""Answer: one result per request, with no second provider call for a request
already answered.

One agent per priority reads the internal accepted topic (keyed by
request_id); its :class:`~llmrouter.runtime.inflight.Lane` runs up to
``worker.max_in_flight`` requests at once and acks each message only when its
outcome is durable, and the consumer commits only up to the first message not
yet acked (:mod:`llmrouter.runtime.kafka`), so a crash at any moment loses
nothing: unanswered requests are delivered again, answered ones re-emit the
stored result.

Per request, :class:`Answer` decides: a stored answer (every final outcome is
stored, errors and timeouts too) is re-emitted, unless the delivery is a DLQ
replay asking for a new try of a stored error (:func:`llmrouter.core.stored.re_emits`); a user
over its quota is refused, anything else is served
(:class:`~llmrouter.dispatch.serving.Serving`: route, dispatch, result record);
then :class:`~llmrouter.runtime.delivery.Delivery` writes it, each write awaited
before the next::

    store the answer (delivered=no) ─► dead letter, if the chain was exhausted
        ─► send the result ─► ack

Before every provider call and the first write the job checks
its fence (:class:`~llmrouter.runtime.inflight.Job`): work on a partition being
handed over never pays a provider or writes a table it no longer owns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace

import faust
import structlog

from llmrouter.cache.policy import refresh_request
from llmrouter.core.dlq import REPLAY_HEADER as DLQ_REPLAY_HEADER
from llmrouter.core.stored import re_emits
from llmrouter.dispatch.budgets import FreeOnly, Ledger
from llmrouter.dispatch.serving import QuotaGate, Serving
from llmrouter.errors import RequestError
from llmrouter.observability.tracing import Tracing, bind_request
from llmrouter.runtime.delivery import Delivery
from llmrouter.runtime.inflight import InFlight, Job, Lane
from llmrouter.runtime.writes import WriteFailed
from llmrouter.config.settings import Settings
from llmrouter.topics import Topics
from llmrouter.wire.codec import Codec
from llmrouter.wire.contract import PRIORITIES, Request, parse_request, refusal_record
from llmrouter.wire.envelope import TRACE_PREFIX, Origin, normalize_headers, origin_of_forwarded

log = structlog.get_logger("llmrouter.answer")


def register(app: faust.App, topics: Topics, in_flight: InFlight, answer: Answer,
             settings: Settings) -> dict[str, Lane]:
    """Declare one answer agent per priority; their lanes, by priority (the backpressure pauses them)."""
    lanes = {}
    for priority in PRIORITIES:
        lane = lanes[priority] = in_flight.lane(f"answer-{priority}", limit=settings.worker.max_in_flight,
                                                handler=answer.answer, on_failure=answer.fail)
        app.agent(topics.accepted[priority], name=f"answer_{priority}_requests")(lane.run)
    return lanes


class Answer:
    """The answer stage's decisions, one request at a time: re-emit, refuse over quota, or serve; then deliver."""

    def __init__(self, *, codec: Codec, priority_of: Mapping[str, str], serving: Serving, delivery: Delivery,
                 ledger: Ledger, quota: QuotaGate, tracing: Tracing, now_ms: Callable[[], int]) -> None:
        self._codec = codec  # reads requests
        self._priority_of = priority_of  # accepted topic name -> priority
        self._serving = serving
        self._delivery = delivery
        self._ledger = ledger
        self._quota = quota
        self._tracing = tracing
        self._now_ms = now_ms
        self._in_flight: dict[str, asyncio.Future[None]] = {}

    async def answer(self, event: faust.EventT, job: Job) -> None:
        """One accepted request, in the span ``answer`` (a child of intake's, whose context the forward carries)."""
        with self._tracing.consuming("answer", event.message, prefix=TRACE_PREFIX):
            origin = origin_of_forwarded(event.value, normalize_headers(event.headers))
            request = self._parse(origin, priority=self._priority_of[event.message.topic])
            await self.handle(request, origin, job, partition=event.message.partition)

    async def handle(self, request: Request, origin: Origin, job: Job, *, partition: int) -> None:
        """The decision for a parsed request: its stored answer again, a quota refusal, or served; delivered."""
        rid = request.request_id
        bind_request(rid)
        while rid in self._in_flight:  # the same request delivered again while the first is still running
            await asyncio.shield(self._in_flight[rid])
        stored = self._delivery.stored(rid)
        if stored is not None and re_emits(stored, dlq_replay=is_dlq_replay(origin),
                                           received_at_ms=origin.received_at_ms):
            job.start_delivery()
            await self._delivery.re_emit(request, stored)
            return
        self._in_flight[rid] = asyncio.get_running_loop().create_future()
        try:
            spend = self._ledger.spend(request_id=rid, user_id=request.user_id, partition=partition)
            refusal = self._quota.refusal(request)
            if refusal is not None:
                record, dead_letter = refusal_record(request, refusal, now_ms=self._now_ms()), None
            else:
                served = await self._serving.serve(request, job.start_call, spend, wait=job.wait_aside)
                record, dead_letter = served.record, served.dead_letter
            job.start_delivery()
            await self._delivery.deliver(request, origin, record, dead_letter)
        finally:  # a duplicate waiting on this request now finds the stored result
            self._in_flight.pop(rid).set_result(None)

    async def refresh_cached(self, raw: bytes, provider: str) -> bool:
        """Ask ``provider`` (the one whose answer the entry holds) again for a popular cached request and store the
        new answer: the cache warmer's refresh ahead. Off the request path: no result, no stream, no table written,
        only free calls. True if stored."""
        request = replace(parse_request(self._codec.decode("LLMRequest", raw), priority="low",
                                        received_at_ms=self._now_ms()), cache_policy="refresh")
        served = await self._serving.serve(refresh_request(request, provider), before_call=lambda: None,
                                           spend=FreeOnly())
        return served.record.get("provider") == provider and self._delivery.cache_answer(request, served.record)

    async def fail(self, event: faust.EventT, exc: BaseException) -> None:
        """The last resort for a request the handler failed on: a dead letter and an ``error``
        result (when its request_id is known), written until they are (:meth:`Delivery.last_resort`).
        It never raises (but for cancellation): if reading the message fails too, the message is kept
        as it is on the accepted topic in a bare dead letter, and the lane acks."""
        code = exc.code if isinstance(exc, (WriteFailed, RequestError)) else "internal_error"
        reason = f"the router failed while answering: {exc}"
        message = event.message
        try:
            with self._tracing.consuming("answer.failed", message, prefix=TRACE_PREFIX):
                headers = normalize_headers(event.headers)
                try:
                    origin = origin_of_forwarded(event.value, headers)
                except ValueError:  # not written by intake (an older version's internal form): keep it as it is
                    origin = self._as_received(message, headers)
                request = self._request_or_none(origin, priority=self._priority_of.get(message.topic, "normal"))
        except Exception as failed:
            log.exception("answer_failure_path_failed", topic=message.topic, partition=message.partition,
                          offset=message.offset)
            await self._delivery.bare_dead_letter(self._as_received(message, ()), code=code,
                                                  reason=f"{reason}; reading it for its dead letter failed: {failed!r}")
            return
        await self._delivery.last_resort(origin, request, code=code, reason=reason)

    def _as_received(self, message: faust.types.Message, headers: tuple | list) -> Origin:
        """The internal message as it is on the accepted topic (no upstream coordinates read from it)."""
        return Origin(topic=message.topic, partition=message.partition, offset=message.offset, key=message.key,
                      value=message.value, headers=headers, received_at_ms=self._now_ms())

    def _parse(self, origin: Origin, *, priority: str) -> Request:
        return parse_request(self._codec.decode("LLMRequest", origin.value), priority=priority,
                             received_at_ms=origin.received_at_ms)

    def _request_or_none(self, origin: Origin, *, priority: str) -> Request | None:
        try:
            return self._parse(origin, priority=priority)
        except RequestError:
            return None


def is_dlq_replay(origin: Origin) -> bool:
    """Whether the upstream message was produced by ``llmrouter dlq replay`` (its header says so)."""
    return any(key == DLQ_REPLAY_HEADER for key, _ in origin.headers)
