"""Answer: one result per request, with no second provider call for a request
already answered.

One agent per priority reads the internal accepted topic (keyed by
request_id); its :class:`~llmrouter.runtime.inflight.Lane` runs up to
``worker.max_in_flight`` requests at once and acks each message only when its
outcome is durable, and the consumer commits only up to the first message not
yet acked (:mod:`llmrouter.runtime.kafka`), so a crash at any moment loses
nothing: unanswered requests are delivered again, answered ones re-emit the
stored result.

Per request, each write awaited before the next::

    store the answer (delivered=no) ─► dead letter, if the chain was exhausted
        ─► send the result ─► ack

and the answer is marked delivered (the replay header's cue) once the result
is out, without waiting for that mark: losing it costs one more copy without
the header after a crash, never a lost or twice-paid request.

Only ``ok`` and ``rejected`` answers are stored; ``error``/``timeout`` ones may
be replayed from the DLQ. A failed write is retried (``worker.write_attempts``);
a result that cannot be delivered goes to the DLQ with an ``error`` result on
``llm.results``. Before every provider call and the first write the job checks
its fence (:class:`~llmrouter.runtime.inflight.Job`): work on a partition being
handed over never pays a provider or writes a table it no longer owns.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import faust
import structlog

from llmrouter.dispatch.budgets import FreeOnly, Ledger
from llmrouter.cache.service import ResponseCache
from llmrouter.wire.codec import Codec
from llmrouter.wire.contract import (PRIORITIES, Refusal, Request, check_dispatch, parse_request, refusal_record,
                                result_record)
from llmrouter.alerting.recorder import OutcomeRecorder
from llmrouter.core.quota import UserQuotas
from llmrouter.core.stored import StoredAnswer
from llmrouter.dispatch.dispatcher import Attempt, Dispatched, Dispatcher, Spend
from llmrouter.wire.envelope import TRACE_PREFIX, Origin, normalize_headers, origin_of_forwarded
from llmrouter.errors import RequestError
from llmrouter.dispatch.flags import FlagsService
from llmrouter.observability.metrics import Metrics
from llmrouter.runtime.publisher import Publisher, now_ms
from llmrouter.registry import ProviderRegistry
from llmrouter.observability.finish import Finisher
from llmrouter.core.routing import Route, RoutingRules, choose, route_of
from llmrouter.runtime.inflight import Fenced, InFlight, Job, Lane
from llmrouter.runtime.writes import WriteFailed, put_durably, put_soon, until_written, with_retries
from llmrouter.config.settings import Settings
from llmrouter.tables import Tables
from llmrouter.topics import Topics
from llmrouter.observability.tracing import Tracing, bind_request

log = structlog.get_logger("llmrouter.answer")
STORED_STATUSES = frozenset({"ok", "rejected"})  # final answers; errors and timeouts may be replayed from the DLQ
CACHED_ROUTES = frozenset({"local", "cloud"})  # answers a provider gave (never a cached one stored again)
NOT_REPLAYED = frozenset({"bad_request", "budget_exceeded"})  # a replay fails again: no dead letter


def register(app: faust.App, topics: Topics, in_flight: InFlight, answerer: Answerer,
             settings: Settings) -> dict[str, Lane]:
    """Declare one answer agent per priority; their lanes, by priority (the backpressure pauses them)."""
    lanes = {}
    for priority in PRIORITIES:
        lane = lanes[priority] = in_flight.lane(f"answer-{priority}", limit=settings.worker.max_in_flight,
                                                handler=answerer.answer, on_failure=answerer.fail)
        app.agent(topics.accepted[priority], name=f"answer_{priority}_requests")(lane.run)
    return lanes


@dataclass(frozen=True)
class DeadLetter:
    code: str
    reason: str
    attempts: int = 0


class Answerer:
    def __init__(
        self, *, settings: Settings, tables: Tables, topics: Topics, codec: Codec, dispatcher: Dispatcher,
        publisher: Publisher, metrics: Metrics, registry: ProviderRegistry, cache: ResponseCache, ledger: Ledger,
        flags: FlagsService, tracing: Tracing, finish: Finisher, quotas: UserQuotas | None = None,
        outcomes: OutcomeRecorder | None = None,
    ) -> None:
        self._settings = settings
        self._answered = tables.answered
        self._priority_of = {topics.accepted[p].get_topic_name(): p for p in PRIORITIES}
        self._dispatcher = dispatcher
        self._publisher = publisher
        self._metrics = metrics
        self._registry = registry
        self._cache = cache
        self._ledger = ledger
        self._flags = flags
        self._quotas = quotas
        self._tracing = tracing
        self._outcomes = outcomes  # the windowed counts of provider calls (None: windows off)
        self._finish = finish  # every result sent: /metrics, the windows, the canonical line
        self._codec = codec  # reads requests
        self._attempts = settings.worker.write_attempts
        self._in_flight: dict[str, asyncio.Future] = {}
        self._turns = itertools.count()  # requests routed: round-robin's turn
        self._rules = routing_rules(settings)

    async def answer(self, event: faust.EventT, job: Job) -> None:
        """One accepted request, in the span ``answer`` (a child of intake's, whose context the forward carries)."""
        with self._tracing.consuming("answer", event.message, prefix=TRACE_PREFIX):
            await self._answer(event, job)

    async def _answer(self, event: faust.EventT, job: Job) -> None:
        origin = origin_of_forwarded(event.value, normalize_headers(event.headers))
        request = parse_request(self._codec.decode("LLMRequest", origin.value),
                                priority=self._priority_of[event.message.topic], received_at_ms=origin.received_at_ms)
        rid = request.request_id
        bind_request(rid)
        while rid in self._in_flight:  # the same request delivered again while the first is still running
            await asyncio.shield(self._in_flight[rid])
        stored = self._stored(rid)
        if stored is not None:
            job.start_delivery()
            await self._re_emit(request, stored)
            return
        self._in_flight[rid] = asyncio.get_running_loop().create_future()
        try:
            spend = self._ledger.spend(request_id=rid, user_id=request.user_id, partition=event.message.partition)
            refusal = self._over_quota(request)
            record, dead_letter = ((refusal_record(request, refusal, now_ms=now_ms()), None) if refusal is not None
                                   else await self._serve(request, job.start_call, spend, wait=job.wait_aside))
            job.start_delivery()
            await self._deliver(request, origin, record, dead_letter)
        finally:  # a duplicate waiting on this request now finds the stored result
            self._in_flight.pop(rid).set_result(None)

    async def refresh_cached(self, raw: bytes) -> bool:
        """Ask the chain again for a popular cached request and store the new answer: the cache warmer's
        refresh ahead. Off the request path: no result is sent and no table written. True if stored."""
        request = replace(parse_request(self._codec.decode("LLMRequest", raw), priority="low",
                                        received_at_ms=now_ms()),
                          cache_policy="refresh", deadline_ms=None, created_at_ms=None, timeout_ms=None)
        record, _ = await self._serve(request, before_call=lambda: None, spend=FreeOnly())
        if record["status"] != "ok" or record.get("route") not in CACHED_ROUTES or not self._cache.decide(request).write:
            return False
        self._cache.store(request, record)
        return True

    async def fail(self, event: faust.EventT, exc: BaseException) -> None:
        """The last resort for a request the handler failed on: a dead letter and an ``error``
        result (when its request_id is known), written until they are."""
        with self._tracing.consuming("answer.failed", event.message, prefix=TRACE_PREFIX):
            await self._fail(event, exc)

    async def _fail(self, event: faust.EventT, exc: BaseException) -> None:
        headers = normalize_headers(event.headers)
        try:
            origin = origin_of_forwarded(event.value, headers)
        except ValueError:  # not written by intake (an older version's internal form): keep it as it is
            message = event.message
            origin = Origin(topic=message.topic, partition=message.partition, offset=message.offset, key=message.key,
                            value=event.value, headers=headers, received_at_ms=now_ms())
        request = self._request_or_none(origin, priority=self._priority_of.get(event.message.topic, "normal"))
        code = exc.code if isinstance(exc, (WriteFailed, RequestError)) else "internal_error"
        reason = f"the router failed while answering: {exc}"
        request_id = request.request_id if request else None
        await until_written(lambda: self._publisher.dead_letter(reason=reason, code=code, origin=origin,
                                                                request_id=request_id), what="dead-letter")
        if request is not None:
            record = result_record(request, status="error", now_ms=now_ms(), error_code=code, error_message=reason)
            await until_written(lambda: self._publisher.result(record), what="send an error result")
            self._finish.result("answer", record, request_id=request_id)

    def _over_quota(self, request: Request) -> Refusal | None:
        """The user's quota (F007), checked here rather than at intake, cheap as intake would be: the
        accepted topics are keyed by request_id, so a user's requests spread evenly over the partitions
        and each worker's share of the quota holds (upstream may key the request topics by anything, a
        user_id included), and the rejection is stored like any answer, so a copy delivered again gets
        the same one. It comes before the ledger and any provider: a refused request costs nothing."""
        if self._quotas is None:
            return None
        reason = self._quotas.check(request.user_id, request.priority, time.monotonic())
        if reason is None:
            return None
        self._metrics.quota_exceeded_total.labels(request.priority).inc()
        return Refusal(status="rejected", code="quota_exceeded", message=reason)

    def _stored(self, request_id: str) -> StoredAnswer | None:
        raw = self._answered.get(request_id.encode())
        if raw is None:
            return None
        try:
            stored = StoredAnswer.from_bytes(raw)
        except ValueError as exc:
            log.warning("stored_answer_unreadable", request_id=request_id, error=str(exc))
            return None
        if stored.expired(now_ms=now_ms(), window_s=self._settings.tables.idempotency_window_s):
            return None
        return stored

    async def _re_emit(self, request: Request, stored: StoredAnswer) -> None:
        """Send the stored result again, byte for byte; flagged as a replay once the first copy was delivered."""
        await with_retries(lambda: self._publisher.send_result(request.request_id, stored.result,
                                                               reply_to=request.reply_to, replay=stored.delivered),
                           what="re-emit a stored result", attempts=self._attempts)
        first_copy = not stored.delivered
        if first_copy:
            self._mark_delivered(request.request_id, stored)
        self._finish.replayed("answer", priority=request.priority, status=stored.status, first_copy=first_copy,
                              record=self._stored_record(stored) if first_copy else None)

    async def _serve(self, request: Request, before_call: Callable[[], None], spend: Spend,
                     wait: Callable[[float], Awaitable[None]] | None = None) -> tuple[dict[str, Any], DeadLetter | None]:
        """The result record, and a dead letter when the request should be kept for a replay."""
        limits = self._settings.limits
        dispatched_at = round(self._dispatcher.clock() * 1000)  # the router's clock: the request's deadline is on it
        refusal = check_dispatch(request, known_providers=self._registry.names(), now_ms=dispatched_at,
                                 default_timeout_s=limits.default_timeout_s)
        if refusal is not None:
            return refusal_record(request, refusal, now_ms=now_ms()), None
        route = choose(request, self._registry.chain(), figures=self._registry.figures(), flags=self._flags.current,
                       rules=self._rules, turn=next(self._turns), emergency=self._registry.emergency(),
                       premium=self._registry.premium())
        if route.refusal is not None:  # cache_only (a cache hit never gets here: intake answered it), or no provider
            return degraded_record(request, route, now_ms=now_ms()), None
        try:
            outcome = await self._dispatcher.dispatch(
                request.to_prompt(), route.chain,
                deadline_s=request.deadline_at_ms(limits.default_timeout_s) / 1000.0,
                priority=PRIORITIES.index(request.priority), before_call=before_call, spend=spend, wait=wait,
                hedge_after_s=route.hedge_after_s,
                on_delta=functools.partial(self._publisher.chunk, request.request_id) if request.stream else None)
        except Fenced:
            raise
        except Exception as exc:  # a provider or the dispatcher failed in a way it should not
            log.exception("dispatch_failed", request_id=request.request_id)
            record = result_record(request, status="error", now_ms=now_ms(), error_code="internal_error",
                                   error_message=f"the router failed while answering: {exc!r}")
            return record, DeadLetter("internal_error", record["error_message"])
        outcome.attempts[:0] = skipped_attempts(route)
        self._count_attempts(outcome)
        self._registry.observe(outcome)
        record = outcome_record(request, outcome, dispatched_at_ms=dispatched_at, now_ms=now_ms(),
                                route_reason=route.reason)
        if outcome.ok or record["error_code"] in NOT_REPLAYED:
            return record, None
        return record, DeadLetter(record["error_code"], record["error_message"], len(outcome.attempts))

    async def _deliver(self, request: Request, origin: Origin, record: dict[str, Any],
                       dead_letter: DeadLetter | None) -> None:
        rid = request.request_id
        data = self._publisher.encode_result(record)
        stored = StoredAnswer(result=data, status=record["status"], stored_at_ms=now_ms())
        if stored.status in STORED_STATUSES:
            await self._store(rid, stored, what="store the answer")
        if dead_letter is not None:
            await with_retries(lambda: self._publisher.dead_letter(
                reason=dead_letter.reason, code=dead_letter.code, origin=origin, request_id=rid,
                attempts=dead_letter.attempts), what="dead-letter the request", attempts=self._attempts)
        try:
            await with_retries(lambda: self._publisher.send_result(rid, data, reply_to=request.reply_to),
                               what=f"send the result to {request.reply_to or self._publisher.results_topic}",
                               attempts=self._attempts)
        except WriteFailed as exc:
            await self._undeliverable(request, origin, exc)
            return
        if stored.status in STORED_STATUSES:
            self._mark_delivered(rid, stored)
        if record["status"] == "ok" and record.get("route") in CACHED_ROUTES and self._cache.decide(request).write:
            self._cache.store(request, record)
        self._finish.result("answer", record)

    async def _undeliverable(self, request: Request, origin: Origin, exc: WriteFailed) -> None:
        """The result could not be sent: keep the request for a replay (its answer stays stored and is
        re-emitted then, not paid for again) and say so on llm.results."""
        reason = f"the result could not be delivered: {exc}"
        await until_written(lambda: self._publisher.dead_letter(reason=reason, code=exc.code, origin=origin,
                                                                request_id=request.request_id), what="dead-letter")
        record = result_record(request, status="error", now_ms=now_ms(), error_code=exc.code, error_message=reason)
        await until_written(lambda: self._publisher.result(record), what="send an error result")
        log.error("result_undeliverable", request_id=request.request_id, reply_to=request.reply_to, error=str(exc))
        self._finish.result("answer", record)

    async def _store(self, request_id: str, stored: StoredAnswer, *, what: str) -> None:
        await with_retries(lambda: put_durably(self._answered, request_id.encode(), stored.to_bytes()),
                           what=what, attempts=self._attempts)

    def _mark_delivered(self, request_id: str, stored: StoredAnswer) -> None:
        """Best effort, not awaited: the result is out already, so losing the mark (a crash before
        its changelog record is written, a failed send) only means a later copy goes without the
        replay header (a duplicate), never that the request failed or is paid for again."""
        put_soon(self._answered, request_id.encode(), stored.as_delivered().to_bytes(), what="delivered_mark")

    def _request_or_none(self, origin: Origin, *, priority: str) -> Request | None:
        try:
            return parse_request(self._codec.decode("LLMRequest", origin.value), priority=priority,
                                 received_at_ms=origin.received_at_ms)
        except RequestError:
            return None

    def _stored_record(self, stored: StoredAnswer) -> dict[str, Any] | None:
        """The record of a stored answer's bytes, to count its first delivery; None (a replay only) if unreadable."""
        try:
            return self._codec.decode("LLMResult", stored.result)
        except RequestError as exc:
            log.warning("stored_result_unreadable", error=str(exc))
            return None

    def _count_attempts(self, outcome: Dispatched) -> None:
        if self._outcomes is not None:
            self._outcomes.calls(outcome)
        for attempt in outcome.attempts:
            self._metrics.provider_calls_total.labels(attempt.provider, attempt.outcome).inc()
            if attempt.outcome == "skipped":
                continue
            self._metrics.provider_call_duration_seconds.labels(attempt.provider, attempt.outcome).observe(
                attempt.latency_ms / 1000.0)
            if attempt.error_code and attempt.outcome in ("error", "timeout"):  # a hedge's loser did not fail
                self._metrics.provider_errors_total.labels(attempt.provider, attempt.error_code).inc()
        if outcome.ok:
            gen = outcome.generation
            self._metrics.llm_tokens_used.labels(outcome.provider, "prompt").inc(gen.prompt_tokens)
            self._metrics.llm_tokens_used.labels(outcome.provider, "completion").inc(gen.completion_tokens)


def routing_rules(settings: Settings) -> RoutingRules:
    """The routing settings as the plain values the routing choice takes."""
    routing = settings.routing
    return RoutingRules(equivalent=tuple(tuple(group) for group in routing.equivalent), strategy=routing.strategy,
                        hedge_after_s=routing.hedge_after_ms / 1000.0 if routing.hedge_after_ms is not None else None,
                        hedge_priorities=frozenset(routing.hedge_priorities))


def skipped_attempts(route: Route) -> list[Attempt]:
    """The providers the operator's flags and overrides left out, as attempts ``skipped`` with their code."""
    return [Attempt(skip.provider, "skipped", error_code=skip.code, error=skip.reason) for skip in route.skipped]


def degraded_record(request: Request, route: Route, *, now_ms: int) -> dict[str, Any]:
    """The ``rejected`` result of a request the flags let no provider serve, with the providers left out."""
    return result_record(request, status=route.refusal.status, now_ms=now_ms, error_code=route.refusal.code,
                         error_message=route.refusal.message, route_reason=route.reason,
                         attempts=[a.as_record() for a in skipped_attempts(route)])


def outcome_record(request: Request, outcome: Dispatched, *, dispatched_at_ms: int, now_ms: int,
                   route_reason: str = "") -> dict[str, Any]:
    """The LLMResult for a dispatch outcome; ``route_reason`` (the plan's) gains which attempt answered."""
    attempts = [a.as_record() for a in outcome.attempts]
    if outcome.ok:
        gen = outcome.generation
        tried = [a.provider for a in outcome.attempts if a.outcome != "skipped" and a.provider != outcome.provider]
        if tried:
            route_reason += f"; {outcome.provider} answered after {', '.join(tried)} failed"
        return result_record(
            request, status="ok", now_ms=now_ms, dispatched_at_ms=dispatched_at_ms, text=gen.text,
            provider=outcome.provider, model=gen.model, route=route_of(outcome.provider), route_reason=route_reason,
            finish_reason=gen.finish_reason, prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens, cost_usd=outcome.cost_usd, attempts=attempts)
    timeouts = [a.error_code for a in outcome.attempts if a.error_code in ("provider_timeout", "deadline_exceeded")]
    if timeouts and all(a.outcome in ("timeout", "skipped") for a in outcome.attempts):
        code = "provider_timeout" if "provider_timeout" in timeouts else "deadline_exceeded"
        return result_record(request, status="timeout", now_ms=now_ms, dispatched_at_ms=dispatched_at_ms,
                             attempts=attempts, error_code=code, error_message=outcome.error_message,
                             route_reason=route_reason)
    status = "rejected" if outcome.error_code == "budget_exceeded" else "error"  # DESIGN.md: refused, not failed
    return result_record(
        request, status=status, now_ms=now_ms, dispatched_at_ms=dispatched_at_ms, route_reason=route_reason,
        attempts=attempts, error_code=outcome.error_code, error_message=outcome.error_message)
