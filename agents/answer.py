"""Answer: one result per request, with no second provider call for a request
already answered.

One agent per priority reads the internal accepted topic (keyed by
request_id). Requests are dispatched concurrently, up to
``worker.max_in_flight`` per priority, and each source message is acked only
after its result is durable. Faust commits only up to the first message not
yet acked, so a crash at any moment loses nothing: unanswered requests are
delivered again, answered ones re-emit the stored result.

Order per request: store the result in ``answered`` and flush it to the
changelog, then send the result, then ack.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import structlog

from llmrouter.contract import PRIORITIES, Request, check_limits, refusal_record, result_record
from llmrouter.dispatch import Dispatched, Dispatcher
from llmrouter.metrics import Metrics
from llmrouter.publisher import Publisher, now_ms
from llmrouter.routing import plan_chain, route_of
from llmrouter.registry import ProviderRegistry
from llmrouter.settings import Settings
from llmrouter.tables import Tables
from llmrouter.topics import Topics

log = structlog.get_logger("llmrouter.answer")
STORED_STATUSES = frozenset({"ok", "rejected"})  # final answers; errors and timeouts may be replayed from the DLQ


def register(app: faust.App, topics: Topics, answerer: Answerer, settings: Settings) -> None:
    """Declare one answer agent per priority."""
    for priority in PRIORITIES:
        agent = ConcurrentAcks(answerer.answer, settings.worker.max_in_flight)
        app.agent(topics.accepted[priority], name=f"answer_{priority}_requests")(agent.run)


class ConcurrentAcks:
    """Runs a handler per event, up to ``limit`` at once, acking each event when its handler ends."""

    def __init__(self, handler: Callable[[faust.EventT], Awaitable[None]], limit: int) -> None:
        self._handler = handler
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task] = set()

    async def run(self, stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await self._slots.acquire()
            # The task copies the current context, so table writes inside it
            # are attributed to this event's partition.
            task = asyncio.create_task(self._handle(manual, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, stream: faust.StreamT, event: faust.EventT) -> None:
        try:
            await self._handler(event)
            await stream.ack(event)
        except Exception:  # not acked: the request is delivered again after a restart
            log.exception("handler_failed", topic=event.message.topic, offset=event.message.offset)
        finally:
            self._slots.release()


class Answerer:
    def __init__(
        self, *, settings: Settings, tables: Tables, dispatcher: Dispatcher, publisher: Publisher,
        metrics: Metrics, app: faust.App, registry: ProviderRegistry,
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._answered = tables.answered
        self._dispatcher = dispatcher
        self._publisher = publisher
        self._metrics = metrics
        self._app = app
        self._in_flight: dict[str, asyncio.Future] = {}

    async def answer(self, event: faust.EventT) -> None:
        try:
            request = Request.from_json(event.value)
        except Exception as exc:  # agent boundary: our own topic, so this is a bug; keep the bytes
            await self._publisher.dead_letter(reason=f"unreadable accepted request: {exc!r}", code="internal_error",
                                              message=event.message)
            return
        rid = request.request_id
        while rid in self._in_flight:  # the same request delivered again while the first is still running
            await asyncio.shield(self._in_flight[rid])
        if await self._replay(request):
            return
        self._in_flight[rid] = asyncio.get_running_loop().create_future()
        try:
            try:
                record = await self._serve(request, event)
            except Exception as exc:  # agent boundary
                log.exception("answer_failed", request_id=rid)
                record = result_record(request, status="error", now_ms=now_ms(), error_code="internal_error",
                                       error_message=f"the router failed while answering: {exc!r}")
                await self._publisher.dead_letter(reason=record["error_message"], code="internal_error",
                                                  message=event.message, request_id=rid)
            await self._finish(request, record)
        finally:  # a duplicate waiting on this request now finds the stored result
            self._in_flight.pop(rid).set_result(None)

    async def _replay(self, request: Request) -> bool:
        stored = self._answered.get(request.request_id)
        if stored is None:
            return False
        await self._publisher.result(stored, reply_to=request.reply_to, replay=True)
        self._metrics.replays_total.inc()
        log.info("result_replayed", request_id=request.request_id, status=stored["status"])
        return True

    async def _serve(self, request: Request, event: faust.EventT) -> dict[str, Any]:
        limits = self._settings.limits
        refusal = check_limits(request, max_prompt_chars=limits.max_prompt_chars, max_tokens=limits.max_tokens,
                               known_providers=self._registry.names(), now_ms=now_ms(),
                               default_timeout_s=limits.default_timeout_s)
        if refusal is not None:
            return refusal_record(request, refusal, now_ms=now_ms())
        dispatched_at = now_ms()
        time_left_s = (request.deadline_at_ms(limits.default_timeout_s) - dispatched_at) / 1000.0
        on_delta = functools.partial(self._publisher.chunk, request.request_id) if request.stream else None
        plan = plan_chain(request, self._registry.chain(), emergency=self._registry.emergency())
        outcome = await self._dispatcher.dispatch(
            request.to_prompt(), plan, time_left_s=time_left_s, priority=PRIORITIES.index(request.priority),
            on_delta=on_delta)
        self._count_attempts(outcome)
        self._registry.observe(outcome)
        record = outcome_record(request, outcome, dispatched_at_ms=dispatched_at, now_ms=now_ms())
        if not outcome.ok:
            await self._publisher.dead_letter(
                reason=record["error_message"], code=record["error_code"], request_id=request.request_id,
                source_topic=event.message.topic, original_value=event.value, attempts=len(outcome.attempts))
        return record

    async def _finish(self, request: Request, record: dict[str, Any]) -> None:
        if record["status"] in STORED_STATUSES:
            self._answered[request.request_id] = record
            await self._app.producer.flush()  # the stored result is durable before anyone sees it
        await self._publisher.result(record, reply_to=request.reply_to)
        route = record.get("route", "none")
        self._metrics.request_total.labels(request.priority, record["status"], route).inc()
        self._metrics.request_duration_seconds.labels(request.priority, route).observe(
            record["total_latency_ms"] / 1000.0)
        log.info("request_answered", request_id=request.request_id, priority=request.priority,
                 status=record["status"], route=route, provider=record.get("provider"),
                 latency_ms=record["total_latency_ms"], queue_ms=record["queue_latency_ms"],
                 prompt_tokens=record.get("prompt_tokens", 0), completion_tokens=record.get("completion_tokens", 0),
                 error_code=record.get("error_code"))

    def _count_attempts(self, outcome: Dispatched) -> None:
        for attempt in outcome.attempts:
            self._metrics.provider_calls_total.labels(attempt.provider, attempt.outcome).inc()
            if attempt.outcome == "skipped":
                continue
            self._metrics.provider_call_duration_seconds.labels(attempt.provider, attempt.outcome).observe(
                attempt.latency_ms / 1000.0)
            if attempt.error_code:
                self._metrics.provider_errors_total.labels(attempt.provider, attempt.error_code).inc()
        if outcome.ok:
            gen = outcome.generation
            self._metrics.llm_tokens_used.labels(outcome.provider, "prompt").inc(gen.prompt_tokens)
            self._metrics.llm_tokens_used.labels(outcome.provider, "completion").inc(gen.completion_tokens)


def outcome_record(request: Request, outcome: Dispatched, *, dispatched_at_ms: int, now_ms: int) -> dict[str, Any]:
    """The LLMResult for a dispatch outcome."""
    attempts = [a.as_record() for a in outcome.attempts]
    if outcome.ok:
        gen = outcome.generation
        return result_record(
            request, status="ok", now_ms=now_ms, dispatched_at_ms=dispatched_at_ms, text=gen.text,
            provider=outcome.provider, model=gen.model, route=route_of(outcome.provider),
            finish_reason=gen.finish_reason, prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens, cost_usd=outcome.cost_usd, attempts=attempts)
    timed_out = bool(outcome.attempts) and all(a.outcome in ("timeout", "skipped") for a in outcome.attempts) \
        and any(a.error_code in ("provider_timeout", "deadline_exceeded") for a in outcome.attempts)
    return result_record(
        request, status="timeout" if timed_out else "error", now_ms=now_ms, dispatched_at_ms=dispatched_at_ms,
        attempts=attempts, error_code=outcome.error_code, error_message=outcome.error_message)
