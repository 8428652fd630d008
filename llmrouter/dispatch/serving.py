"""Serving one request: the routing choice, the dispatch down the chain, and the result record it ends in.

The answer stage's middle step (agents/answer.py), with no Kafka and no table:
:class:`Serving` checks the request can be dispatched now, asks
:func:`llmrouter.core.routing.choose` for the route (the operator's flags
included), hands it to the :class:`~llmrouter.dispatch.dispatcher.Dispatcher`
with the request's deadline as an absolute time on the dispatcher's clock,
counts the attempts (:meth:`llmrouter.observability.finish.Finisher.calls`) and
returns the LLMResult record, with a :class:`DeadLetter` when the request should
be kept for a replay. :class:`QuotaGate` is the user's quota (F007), asked
before any of it.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from llmrouter.core.flag_state import FlagState
from llmrouter.core.quota import UserQuotas
from llmrouter.core.routing import Figures, Route, RoutingRules, choose, route_of
from llmrouter.dispatch.dispatcher import Dispatcher
from llmrouter.dispatch.attempts import Attempt, Dispatched, OnDelta, Spend
from llmrouter.observability.finish import Finisher
from llmrouter.runtime.inflight import Fenced
from llmrouter.wire.contract import PRIORITIES, Refusal, Request, check_dispatch, refusal_record, result_record

log = structlog.get_logger("llmrouter.answer")
NOT_REPLAYED = frozenset({"bad_request", "budget_exceeded"})  # a replay fails again: no dead letter
Wait = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class DeadLetter:
    """Why a served request goes to the DLQ (for a replay), and how many attempts it took."""

    code: str
    reason: str
    attempts: int = 0


@dataclass(frozen=True)
class Served:
    """The result record of a request, and its dead letter when it should be kept for a replay."""

    record: dict[str, Any]
    dead_letter: DeadLetter | None = None


class Providers(Protocol):
    """What serving asks of the provider registry (:class:`llmrouter.registry.ProviderRegistry`)."""

    def names(self) -> tuple[str, ...]: ...
    def chain(self) -> list[str]: ...
    def emergency(self) -> frozenset[str] | set[str]: ...
    def premium(self) -> frozenset[str] | set[str]: ...
    def figures(self) -> dict[str, Figures]: ...
    def observe(self, outcome: Dispatched) -> None: ...


class Flags(Protocol):
    @property
    def current(self) -> FlagState: ...


class Serving:
    """Routes and dispatches one request into its result record (five collaborators, the settings as values)."""

    def __init__(self, *, dispatcher: Dispatcher, providers: Providers, flags: Flags, finish: Finisher,
                 stream: Callable[[str], OnDelta] | None, rules: RoutingRules, default_timeout_s: float) -> None:
        self._dispatcher = dispatcher
        self._providers = providers
        self._flags = flags
        self._finish = finish  # counts the attempts (the results are counted once delivered)
        self._stream = stream  # request_id -> the sender of its stream's deltas (runtime/stream_marks.py)
        self._rules = rules
        self._default_timeout_s = default_timeout_s
        self._turns = itertools.count()  # requests routed: round-robin's turn

    def now_ms(self) -> int:
        """Now on the router's clock (the dispatcher's), in milliseconds."""
        return round(self._dispatcher.clock() * 1000)

    async def serve(self, request: Request, before_call: Callable[[], None], spend: Spend,
                    wait: Wait | None = None) -> Served:
        """The result record, and a dead letter when the request should be kept for a replay."""
        dispatched_at = self.now_ms()
        refusal = check_dispatch(request, known_providers=self._providers.names(), now_ms=dispatched_at,
                                 default_timeout_s=self._default_timeout_s)
        if refusal is not None:
            return Served(refusal_record(request, refusal, now_ms=dispatched_at))
        route = self._route(request)
        if route.refusal is not None:  # cache_only (a cache hit never gets here: intake answered it), or no provider
            return Served(degraded_record(request, route, now_ms=self.now_ms()))
        try:
            outcome = await self._dispatch(request, route, before_call, spend, wait)
        except Fenced:
            raise
        except Exception as exc:  # a provider or the dispatcher failed in a way it should not
            log.exception("dispatch_failed", request_id=request.request_id)
            record = result_record(request, status="error", now_ms=self.now_ms(), error_code="internal_error",
                                   error_message=f"the router failed while answering: {exc!r}")
            return Served(record, DeadLetter("internal_error", record["error_message"]))
        outcome.attempts[:0] = skipped_attempts(route)
        self._finish.calls(outcome)
        self._providers.observe(outcome)
        record = outcome_record(request, outcome, dispatched_at_ms=dispatched_at, now_ms=self.now_ms(),
                                route_reason=route.reason)
        if outcome.ok or record["error_code"] in NOT_REPLAYED:
            return Served(record)
        return Served(record, DeadLetter(record["error_code"], record["error_message"], len(outcome.attempts)))

    def _route(self, request: Request) -> Route:
        providers = self._providers
        return choose(request, providers.chain(), figures=providers.figures(), flags=self._flags.current,
                      rules=self._rules, turn=next(self._turns), emergency=providers.emergency(),
                      premium=providers.premium())

    async def _dispatch(self, request: Request, route: Route, before_call: Callable[[], None], spend: Spend,
                        wait: Wait | None) -> Dispatched:
        on_delta = self._stream(request.request_id) if request.stream and self._stream is not None else None
        return await self._dispatcher.dispatch(
            request.to_prompt(), route.chain, deadline_s=request.deadline_at_ms(self._default_timeout_s) / 1000.0,
            priority=PRIORITIES.index(request.priority), before_call=before_call, spend=spend, wait=wait,
            hedge_after_s=route.hedge_after_s, on_delta=on_delta)


class QuotaGate:
    """The user's quota (F007), checked by the answer stage rather than at intake, cheap as intake would be: the
    accepted topics are keyed by request_id, so a user's requests spread evenly over the partitions and each
    worker's share of the quota holds (upstream may key the request topics by anything, a user_id included),
    and the rejection is stored like any answer, so a copy delivered again gets the same one. It comes before
    the ledger and any provider: a refused request costs nothing. None quotas: off. ``clock``: seconds, the
    quotas' own (monotonic) time; ``counted(priority)``: each refusal (``quota_exceeded_total``)."""

    def __init__(self, quotas: UserQuotas | None, *, counted: Callable[[str], None], clock: Callable[[], float]):
        self._quotas, self._counted, self._clock = quotas, counted, clock

    def refusal(self, request: Request) -> Refusal | None:
        """The ``quota_exceeded`` refusal of a user over its quota, or None."""
        if self._quotas is None:
            return None
        reason = self._quotas.check(request.user_id, request.priority, self._clock())
        if reason is None:
            return None
        self._counted(request.priority)
        return Refusal(status="rejected", code="quota_exceeded", message=reason)


def routing_rules(routing: Any) -> RoutingRules:
    """The routing settings (``settings.routing``) as the plain values the routing choice takes."""
    return RoutingRules(equivalent=tuple(tuple(group) for group in routing.equivalent), strategy=routing.strategy,
                        hedge_after_s=routing.hedge_after_ms / 1000.0 if routing.hedge_after_ms is not None else None,
                        hedge_priorities=frozenset(routing.hedge_priorities))


def skipped_attempts(route: Route) -> list[Attempt]:
    """The providers the operator's flags and overrides left out, as attempts ``skipped`` with their code."""
    return [Attempt(skip.provider, "skipped", error_code=skip.code, error=skip.reason) for skip in route.skipped]


def degraded_record(request: Request, route: Route, *, now_ms: int) -> dict[str, Any]:
    """The ``rejected`` result of a request the flags let no provider serve, with the providers left out."""
    assert route.refusal is not None
    return result_record(request, status=route.refusal.status, now_ms=now_ms, error_code=route.refusal.code,
                         error_message=route.refusal.message, route_reason=route.reason,
                         attempts=[a.as_record() for a in skipped_attempts(route)])


def outcome_record(request: Request, outcome: Dispatched, *, dispatched_at_ms: int, now_ms: int,
                   route_reason: str = "") -> dict[str, Any]:
    """The LLMResult for a dispatch outcome; ``route_reason`` (the plan's) gains which attempt answered."""
    attempts = [a.as_record() for a in outcome.attempts]
    if outcome.ok:
        gen = outcome.generation
        assert gen is not None
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
