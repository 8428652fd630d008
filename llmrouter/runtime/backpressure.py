"""Backpressure by priority, acted on: the answer topics of the priorities the decision pauses
(:mod:`llmrouter.core.backpressure`) are held, and resumed when it says so.

**What is paused: the answer stage, not intake.** Provider capacity is used by
the answer agents, so a paused priority's ``llm.router.accepted.<p>`` is no
longer fetched (:meth:`SafeCommitConsumer.hold`) and its answer lane starts no
new job (:meth:`Lane.pause`: faust has already fetched up to thousands of its
records into memory, and those stop at once too). Jobs under way finish.
``llm.requests.<p>`` keeps flowing through intake, which costs no provider
capacity: cache hits are still answered at the front, bad and refused
requests still get their answer at once, and the rest is forwarded to the
accepted topic, where it waits, durable and in order (the same retention as
the request topics), until the priority resumes. Pausing intake instead
would hold back the cheap answers, and would not stop the answer stage from
working off what intake had already forwarded. Nothing is dropped: a held
record is neither fetched nor acked, so nothing commits past it.

**Rebalances.** The hold is by topic, kept by the consumer and applied to every
fetch, so faust's resuming of every partition after a rebalance or recovery
does not undo it, and partitions assigned later are held at once; each new
assignment is logged with the partitions it holds (``assignment_listeners``).
The decision and the lanes belong to the worker, not to a partition, so a
rebalance changes neither. The stall watch does not take a held partition
for a stalled one (:mod:`llmrouter.app`).

Every pause and resume is logged, counted in ``llmrouter_backpressure_paused``
and written to ``llm.events`` (entity ``backpressure:<priority>``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog
from faust.types import TP
from mode import Service

from llmrouter.core.backpressure import PRIORITIES, Change, Load, PriorityBackpressure, chain_out_of_tokens
from llmrouter.observability.metrics import Metrics
from llmrouter.runtime.inflight import Lane
from llmrouter.config.settings import BackpressureSettings
from llmrouter.runtime.clock import wall_ms

log = structlog.get_logger("llmrouter.backpressure")
HISTORY = 20  # changes kept for the /backpressure/ view

Publish = Callable[[str, str, dict[str, str]], Awaitable[None]]  # Publisher.event: entity, kind, data


class Holder(Protocol):
    """The consumer's side (:class:`~llmrouter.runtime.kafka.SafeCommitConsumer`)."""

    def hold(self, topics: set[str]) -> None: ...

    def held_partitions(self) -> set[TP]: ...


class Backpressure(Service):
    """Samples the load every ``sample_interval_s``, and pauses or resumes what the decision says."""

    def __init__(self, settings: BackpressureSettings, *, consumer: Callable[[], Holder], lanes: Mapping[str, Lane],
                 topics: Mapping[str, str], sample: Callable[[], Load], publish: Publish, metrics: Metrics,
                 worker: str, clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.decision = PriorityBackpressure(settings.to_config())
        self._consumer = consumer  # read when used: faust builds its consumer lazily
        self._lanes = lanes
        self._topics = topics  # priority -> its answer topic (the prefix included)
        self._sample = sample
        self._publish = publish
        self._metrics = metrics
        self._worker = worker
        self._clock = clock
        self.last: Load = Load(waiting={})
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        for priority in PRIORITIES:
            metrics.backpressure_paused.labels(priority).set(0)

    @Service.task
    async def _watch(self) -> None:
        if not self.settings.enabled:
            return
        async for _ in self.itertimer(self.settings.sample_interval_s, name="backpressure"):
            try:
                self.step()
            except Exception:  # a bug here must neither stop the worker nor leave a priority paused for good
                log.exception("backpressure_step_failed", action="every priority resumed")
                self._release_all()

    def step(self) -> Change | None:
        """Sample once; pause or resume what the decision says."""
        load = self.last = self._sample()
        for priority in PRIORITIES:
            self._metrics.backpressure_waiting.labels(priority).set(load.waiting.get(priority, 0))
        change = self.decision.observe(load, self._clock())
        if change is not None:
            self._apply(change)
        return change

    def on_assignment(self, owned: set[TP]) -> None:
        """An assignment listener: the hold carries over by itself (it is by topic); say what it holds now."""
        if owned and self.decision.paused:
            self._hold()
            log.info("backpressure_reapplied", paused=",".join(self.decision.paused),
                     partitions=_names(self._consumer().held_partitions()))

    def describe(self) -> dict[str, Any]:
        """The state for the /backpressure/ view and /health/."""
        now = self._clock()
        return {
            "enabled": self.settings.enabled,
            "paused": [{"priority": p, "topic": self._topics[p], "for_s": round(now - self.decision.paused_at_s[p], 3),
                        "resume_after_s": self.decision.resume_wait_s(p)} for p in self.decision.paused],
            "held_partitions": sorted(_names(self._consumer().held_partitions())),
            "waiting": {p: self.last.waiting.get(p, 0) for p in PRIORITIES},
            "tokens_out": self.last.tokens_out,
            "config": self.settings.model_dump(),
            "history": list(self.history),
        }

    def _apply(self, change: Change) -> None:
        lane = self._lanes[change.priority]
        lane.pause() if change.paused else lane.resume()
        self._hold()
        self._metrics.backpressure_paused.labels(change.priority).set(1 if change.paused else 0)
        kind = "paused" if change.paused else "resumed"
        partitions = _names(self._consumer().held_partitions() if change.paused else set())
        fields = {"worker": self._worker, "priority": change.priority, "topic": self._topics[change.priority],
                  "reason": change.reason, "pressure": str(change.pressure),
                  "partitions": ",".join(sorted(partitions))}
        if change.paused:
            log.warning("priority_paused", **fields)
        else:
            log.info("priority_resumed", **fields)
        self.history.append({"kind": kind, "at_ms": wall_ms(), **fields})
        self.add_future(self._announce(f"backpressure:{change.priority}", kind, fields))

    def _release_all(self) -> None:
        for priority in self.decision.paused:
            self._lanes[priority].resume()
            self._metrics.backpressure_paused.labels(priority).set(0)
        self.decision = PriorityBackpressure(self.settings.to_config())
        self._consumer().hold(set())

    def _hold(self) -> None:
        self._consumer().hold({self._topics[p] for p in self.decision.paused})

    async def _announce(self, entity: str, kind: str, data: dict[str, str]) -> None:
        """The audit-trail entry, off the sampling loop (a slow broker must not stall the decisions)."""
        try:
            await self._publish(entity, kind, data)
        except Exception as exc:  # the log line above has it; the audit entry is best effort
            log.warning("backpressure_event_not_written", entity=entity, kind=kind, error=repr(exc))


def sample_load(registry: Any, limits: Any) -> Load:
    """One sample of the provider registry and the rate limits (:mod:`llmrouter.dispatch.limits`): the waiters of
    every provider's bulkhead by priority, and whether every usable provider of the chain is out of
    rate-limit tokens (its share spent, or held off by a 429). The local model has no bulkhead: it queues
    by priority itself and sends on what it cannot take in time, so its overflow shows at the next
    provider's bulkhead."""
    waiting: dict[str, int] = {}
    for bulkhead in registry.bulkheads().values():
        for index, count in bulkhead.waiting_by_priority().items():
            priority = PRIORITIES[min(index, len(PRIORITIES) - 1)]
            waiting[priority] = waiting.get(priority, 0) + count
    status, shares = registry.status(), limits.snapshot()
    usable = [name for name in registry.chain() if status.get(name, {}).get("available")]

    def spent(name: str) -> bool:
        share = shares.get(name)  # only providers with a limit that were called have one
        return limits.held_for(name) > 0 or (share is not None and (share["tokens"] < 1 or share["limited_for_s"] > 0))

    return Load(waiting=waiting, tokens_out=chain_out_of_tokens(usable, {name: spent(name) for name in usable}))


def _names(tps: set[TP]) -> set[str]:
    return {f"{tp.topic}[{tp.partition}]" for tp in tps}
