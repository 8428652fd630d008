"""Intake: decode and validate what upstream produced, one agent per priority.

A good request is forwarded, as the very bytes upstream sent, keyed by
request_id onto the internal accepted topic of its priority (so the
idempotency table is written from a stream grouped by its key), with where it
came from in headers (:mod:`llmrouter.wire.envelope`). Before that, every size
limit and the ``reply_to`` topic are checked, so nothing unservable takes a
slot downstream: such a request gets a ``rejected`` result at once. The
``reply_to`` check comes before every send, a recent answer's re-emit
included: a sender may not have a result written into a topic of its
choosing. A request whose answer is in the response cache (and may be read from it,
:mod:`llmrouter.cache.policy`) is answered here, the fast path: no hop
through the accepted topic, no table write, no provider. A bad one
goes to the DLQ with its original bytes and the reason; when it names a
request_id, an ``error`` result tells the requester too. Each message is
acked only once its outcome is durable; the stream never stops on bad input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
import structlog

from llmrouter.cache.recent import RecentAnswers
from llmrouter.cache.service import ResponseCache
from llmrouter.cache.tiers import Hit
from llmrouter.wire.codec import Codec
from llmrouter.wire.contract import (PRIORITIES, Refusal, Request, check_reply_to, check_size, refusal_record,
                                     result_record, unparsed_result_record)
from llmrouter.wire.envelope import Origin, normalize_headers
from llmrouter.wire.reading import read_request
from llmrouter.observability.finish import Finisher
from llmrouter.runtime.clock import wall_ms
from llmrouter.core.sizes import record_bytes
from llmrouter.runtime.publisher import Publisher, forward_record
from llmrouter.runtime.delivery import write_bare_dead_letter
from llmrouter.runtime.inflight import InFlight, Job
from llmrouter.runtime.topic_directory import TopicDirectory
from llmrouter.runtime.writes import until_written, with_retries
from llmrouter.config.settings import Settings
from llmrouter.topics import Topics
from llmrouter.observability.tracing import Tracing, bind_request

log = structlog.get_logger("llmrouter.intake")


def register(app: faust.App, topics: Topics, in_flight: InFlight, intake: Intake, settings: Settings) -> None:
    """Declare one intake agent per priority topic."""
    for priority in PRIORITIES:
        lane = in_flight.lane(f"intake-{priority}", limit=settings.worker.intake_concurrency,
                              handler=intake.accept, on_failure=intake.fail)
        app.agent(topics.requests[priority], name=f"accept_{priority}_requests")(lane.run)


class Intake:
    def __init__(self, *, settings: Settings, topics: Topics, codec: Codec, publisher: Publisher,
                 directory: TopicDirectory, cache: ResponseCache, finish: Finisher, tracing: Tracing) -> None:
        self._settings = settings
        self._accepted = {p: topics.accepted[p].get_topic_name() for p in PRIORITIES}
        self._priority_of = {topics.requests[p].get_topic_name(): p for p in PRIORITIES}
        self._codec = codec
        self._publisher = publisher
        self._directory = directory
        self._cache = cache
        self._finish = finish  # every result intake sends: /metrics, the windows, the canonical line
        self._tracing = tracing
        self._recent = RecentAnswers(settings.cache.recent_answers)
        self._attempts = settings.worker.write_attempts

    async def accept(self, event: faust.EventT, job: Job) -> None:
        """One upstream message, in the span ``intake`` (continuing the producer's trace, if it sent one)."""
        with self._tracing.consuming("intake", event.message):
            await self.handle(origin_of(event.message), job)

    async def handle(self, origin: Origin, job: Job) -> None:
        """The decision for one upstream message: dead letter, the recent answer again, a refusal, a cache hit
        answered here, or forwarded to the answer stage; each outcome durable before the job is done."""
        priority = self._priority_of[origin.topic]
        reading = read_request(self._codec, origin.value, priority=priority, received_at_ms=origin.received_at_ms)
        if reading.error is not None:
            job.start_delivery()
            await self._dead_letter(origin, reading.decoded, priority, code=reading.error.code,
                                    reason=str(reading.error))
            return
        request = reading.request
        bind_request(request.request_id)
        refused_reply_to = await self._check_reply_to(request.reply_to)  # before any send, the re-emit's too
        if refused_reply_to is None and (earlier := self._recent.get(request.request_id)) is not None:
            job.start_delivery()
            await with_retries(lambda: self._publisher.send_result(request.request_id, earlier,
                                                                   reply_to=request.reply_to, replay=True),
                               what="re-emit a cached result", attempts=self._attempts)
            self._finish.replayed("intake", priority=request.priority, route="cache")
            return
        refusal = refused_reply_to or self._check_size(request, origin)
        hit = None
        if refusal is None and self._cache.decide(request).read:
            with self._tracing.span("cache.lookup") as span:
                hit = await self._cache.lookup(request, origin.value)
                span.set_attribute("llm.cache_level", hit.level if hit is not None else "none")
        if hit is not None and hit.answer.request_id == request.request_id:
            hit = None  # the answer paid for this very request: it is delivered again, the answer stage re-emits it
        job.start_delivery()
        if refusal is not None:
            await self._refuse(request, refusal)
            return
        if hit is not None:
            await self._answer_from_cache(request, hit)
            return
        await with_retries(lambda: self._publisher.forward(self._accepted[priority], origin, request.request_id),
                           what="forward the request", attempts=self._attempts)

    async def _answer_from_cache(self, request: Request, hit: Hit) -> None:
        """The fast path: the cached answer as this request's result, from intake itself (no hop through
        the accepted topic, no table write, no provider). It costs nothing now: ``cost_usd`` is 0."""
        answer = hit.answer
        if request.stream:
            await with_retries(lambda: self._publisher.chunk(request.request_id, 0, answer.text, True,
                                                             answer.provider),
                               what="send a cached stream chunk", attempts=self._attempts)
        record = result_record(
            request, status="ok", now_ms=wall_ms(), text=answer.text, provider=answer.provider or None,
            model=answer.model or None, route="cache", cache_level=hit.level, route_reason=hit.route_reason(wall_ms()),
            finish_reason=answer.finish_reason or None,
            prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens, cost_usd=0.0)
        data = self._publisher.encode_result(record)
        await with_retries(lambda: self._publisher.send_result(request.request_id, data, reply_to=request.reply_to),
                           what="send a cached result", attempts=self._attempts)
        self._recent.put(request.request_id, data)
        self._finish.result("intake", record)

    async def fail(self, event: faust.EventT, exc: BaseException) -> None:
        """The last resort for a message intake failed on: dead letter (and error result) until written.

        It never raises (but for cancellation: the message is then delivered again): if its own path
        fails, a bare dead letter is written instead (:func:`write_bare_dead_letter`), and the lane acks."""
        origin = origin_of(event.message)
        code = getattr(exc, "code", "internal_error")
        try:
            priority = self._priority_of[origin.topic]
            decoded = read_request(self._codec, origin.value, priority=priority,
                                   received_at_ms=origin.received_at_ms).decoded
            with self._tracing.consuming("intake.failed", event.message):
                await self._dead_letter(origin, decoded, priority, code=code, reason=f"intake failed: {exc}",
                                        last_resort=True)
        except Exception as failed:  # the failure path failed: no decoding, no result, only the bytes kept
            log.exception("dead_letter_path_failed", topic=origin.topic, partition=origin.partition,
                          offset=origin.offset)
            await write_bare_dead_letter(self._publisher, origin, code=code,
                                         reason=f"intake failed: {exc!r}; its dead-letter path failed: {failed!r}")

    def _check_size(self, request: Request, origin: Origin) -> Refusal | None:
        limits = self._settings.limits
        size = len(origin.value) + sum(len(k) + len(v or b"") for k, v in origin.forward_headers())
        if size > limits.max_message_bytes:
            return Refusal(status="rejected", code="message_too_large",
                           message=f"the request is {size} bytes with its headers; the limit is "
                                   f"{limits.max_message_bytes}")
        return self._check_forward(request, origin) or check_size(
            request, max_prompt_chars=limits.max_prompt_chars, max_tokens=limits.max_tokens,
            caps=limits.field_caps())

    def _check_forward(self, request: Request, origin: Origin) -> Refusal | None:
        """The refusal of a request whose forward, as it would be sent (key, upstream's and our headers, the
        record overhead), is over the producer's record limit: refused here, not failed at the send."""
        _topic, key, value, headers = forward_record(self._accepted[request.priority], origin, request.request_id)
        size, limit = record_bytes(key, value, headers), self._settings.kafka.max_record_bytes
        if size <= limit:
            return None
        return Refusal(status="rejected", code="message_too_large",
                       message=f"the request is {size} bytes as forwarded, with its key, headers and record "
                               f"overhead; the limit is {limit} (kafka.max_record_bytes)")

    async def _check_reply_to(self, reply_to: str | None) -> Refusal | None:
        allowed = self._settings.reply_to_patterns()
        refusal = check_reply_to(reply_to, allowed=allowed, exists=True)
        if refusal is not None or reply_to is None:
            return refusal
        return check_reply_to(reply_to, allowed=allowed, exists=await self._directory.exists(reply_to))

    async def _refuse(self, request: Request, refusal: Refusal) -> None:
        record = refusal_record(request, refusal, now_ms=wall_ms())
        reply_to = None if refusal.code.startswith("reply_to") else request.reply_to
        await with_retries(lambda: self._publisher.result(record, reply_to=reply_to),
                           what="send a refusal", attempts=self._attempts)
        self._finish.result("intake", record)

    async def _dead_letter(self, origin: Origin, decoded: dict[str, Any], priority: str, *, code: str,
                           reason: str, last_resort: bool = False) -> None:
        """DLQ entry, then an ``error`` result when the request names a usable request_id (to its
        reply_to when that is a valid one). ``last_resort``: retry until written, not a few times, but a
        write no retry can help raises at once; the error result is then only logged if it cannot be sent
        (the letter, written first, is what must not be lost, and a second one must not follow it)."""
        def persist(write: Callable[[], Awaitable[None]], what: str) -> Awaitable[None]:
            if last_resort:
                return until_written(write, what=what)
            return with_retries(write, what=what, attempts=self._attempts)

        request_id = _usable_request_id(decoded)
        await persist(lambda: self._publisher.dead_letter(reason=reason, code=code, origin=origin,
                                                          request_id=request_id), "dead-letter a bad request")
        log.warning("request_dead_lettered", request_id=request_id, code=code, reason=reason,
                    topic=origin.topic, partition=origin.partition, offset=origin.offset)
        if request_id is None:
            return
        try:
            await self._tell_requester(origin, decoded, request_id, priority, code=code, reason=reason,
                                       persist=persist)
        except Exception:
            if not last_resort:
                raise
            log.exception("error_result_lost", request_id=request_id, code=code)

    async def _tell_requester(self, origin: Origin, decoded: dict[str, Any], request_id: str, priority: str, *,
                              code: str, reason: str,
                              persist: Callable[[Callable[[], Awaitable[None]], str], Awaitable[None]]) -> None:
        """The ``error`` result of a dead-lettered request, to its reply_to when that is a valid one."""
        reply_to = decoded.get("reply_to") if isinstance(decoded.get("reply_to"), str) else None
        if reply_to is not None and await self._check_reply_to(reply_to) is not None:
            reply_to = None
        record = unparsed_result_record(request_id, priority=priority, received_at_ms=origin.received_at_ms,
                                        now_ms=wall_ms(), error_code=code, error_message=reason)
        await persist(lambda: self._publisher.result(record, reply_to=reply_to), "send an error result")
        self._finish.result("intake", record, request_id=request_id)


def origin_of(message: faust.types.Message) -> Origin:
    return Origin(topic=message.topic, partition=message.partition, offset=message.offset, key=message.key,
                  value=message.value, headers=normalize_headers(message.headers), received_at_ms=wall_ms())


def _usable_request_id(decoded: dict[str, Any]) -> str | None:
    """The request_id, when it can key a result (a string of valid Unicode)."""
    request_id = decoded.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        return None
    try:
        request_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return request_id
