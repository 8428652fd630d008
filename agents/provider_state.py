"""Provider state: the owner of each provider folds every worker's reports into one breaker.

``llm.router.health`` is keyed by provider, so each provider's reports reach
one worker of the group, the one that owns its partition; that worker's agent
applies them in order (:func:`llmrouter.core.provider_state.apply`), writes
the ``provider_state`` table (in the report's partition: faust restores it on
whoever owns the partition next, after a rebalance or a crash) and puts each
breaker move on ``llm.events``. Every worker follows the table's changelog
(:mod:`llmrouter.dispatch.fleet`).

A report that cannot be read is logged and skipped: it came from a worker of
another version, and losing it only weakens one window of outcomes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import faust
import structlog

from llmrouter.core.breaker import BreakerConfig
from llmrouter.core.provider_state import Report, apply
from llmrouter.runtime.publisher import Publisher
from llmrouter.runtime.writes import put_durably, with_retries

log = structlog.get_logger("llmrouter.provider_state")


def register(app: faust.App, health: faust.TopicT, owner: ProviderStateOwner) -> None:
    @app.agent(health, name="own_provider_state")
    async def own_provider_state(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await owner.apply(event.key, event.value)


class ProviderStateOwner:
    def __init__(self, table: faust.Table, config: BreakerConfig, publisher: Publisher, *, write_attempts: int,
                 wall: Callable[[], float] = time.time) -> None:
        self._table, self._config, self._publisher = table, config, publisher
        self._attempts, self._wall = write_attempts, wall

    async def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One worker's report on one provider (in the report's event context: the table's partition)."""
        if not key:
            log.warning("provider_report_without_key")
            return
        provider = key.decode("utf-8", "replace")
        try:
            report = Report.from_bytes(value or b"")
        except ValueError as exc:
            log.warning("provider_report_unreadable", provider=provider, error=str(exc))
            return
        raw = self._table.get(key)
        state, moves = apply(json.loads(raw) if raw else None, report, config=self._config, now_s=self._wall())
        encoded = json.dumps(state, separators=(",", ":")).encode()
        await with_retries(lambda: put_durably(self._table, key, encoded), what="write a provider's state",
                           attempts=self._attempts)
        for moved in moves:
            log.info("breaker_moved", provider=provider, before=moved.before.value, after=moved.after.value,
                     reason=moved.reason, reported_by=report.worker)
            await self._publisher.event(f"provider:{provider}", f"breaker_{moved.after.value}",
                                        {"from": moved.before.value, "reason": moved.reason})
