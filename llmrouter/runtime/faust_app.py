"""The router's faust.App: faust's own, with its work fenced on rebalance and stop.

* Its Kafka transport is :class:`~llmrouter.runtime.kafka.RouterTransport`
  (commits that never pass work in flight, an idempotent producer).
* When partitions are revoked, before faust's consumer forgets their acks and
  committed offsets, the work in flight on them is drained (:meth:`InFlight.drain`: queued work cancelled,
  provider calls under way given a grace period, then cancelled before they
  write) and what finished is committed, all while the old assignment still
  holds, so the next owner starts after it and never pays for it again.
* When the worker stops (SIGTERM), the same drain runs before faust stops the
  consumer and commits.
* ``assignment_listeners`` hear what the worker owns after each assignment,
  and nothing when a rebalance starts (the rate-limit shares, llmrouter.dispatch.limits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
import structlog
from faust.types import TP

from llmrouter.runtime.inflight import InFlight
from llmrouter.runtime.kafka import RouterTransport

log = structlog.get_logger("llmrouter.app")


class RouterApp(faust.App):
    in_flight: InFlight | None = None
    fetch_max_wait_ms: int | None = None  # the broker's fetch wait (None: faust's 1,500 ms); set before start

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.assignment_listeners: list[Callable[[set[TP]], None]] = []  # told what this worker owns now

    def attach(self, in_flight: InFlight) -> None:
        """Drain ``in_flight`` on every revocation and at stop."""
        self.in_flight = in_flight
        self.add_dependency(in_flight)
        self.consumer.before_revoke = self._drain_revoked

    def _new_transport(self) -> RouterTransport:
        return RouterTransport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> RouterTransport:
        return RouterTransport(self.conf.broker_producer, self)

    async def _drain_revoked(self, revoked: set[TP]) -> None:
        """Called by the consumer when partitions are revoked, before faust lets go of them."""
        if self.in_flight is not None:
            await self.in_flight.drain(revoked)
            await self._commit_drained(revoked)

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        for listener in self.assignment_listeners:
            listener(set())  # eager rebalancing: every partition goes; nothing is owned until the next assignment
        await super()._on_partitions_revoked(revoked)

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        if self.in_flight is not None:
            self.in_flight.resume()
        await super()._on_partitions_assigned(assigned, generation_id)
        for listener in self.assignment_listeners:
            listener(set(assigned))

    async def on_stop(self) -> None:
        if self.in_flight is not None:
            await self.in_flight.drain(None)
        await super().on_stop()

    async def _commit_drained(self, revoked: set[TP]) -> None:
        """Commit what the drain finished while the partitions are still ours (fewer replays)."""
        try:
            await self.consumer.commit(set(revoked))
        except Exception as exc:  # the next owner replays stored results instead: no loss, no second call
            log.warning("commit_on_revoke_failed", error=repr(exc))
