"""What every worker knows of the providers' shared state, and what it tells their owners.

* Out: every ``report_interval_s`` the worker sends what its calls showed since
  the last time (its breakers' :class:`~llmrouter.core.provider_state.OutcomeBuffer`:
  outcomes and 429 waits) to ``llm.router.health``, keyed by provider, where the
  provider's owner folds it into the shared state (agents/provider_state.py).
* In: the worker reads the ``provider_state`` table's changelog whole, with no
  group (:class:`~llmrouter.registry.reader.CompactedTopicReader`, as for
  llm.providers), and acts on each record: a provider the owner has open is
  opened in this worker's breakers until the owner's cool-down ends; a
  provider that asked any worker to wait is held off in its rate limit.

The changelog is read to its end before the worker serves, so a worker that
starts while a provider is down does not learn it again with calls of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import mode
import structlog

from llmrouter.dispatch.breakers import LocalBreakers
from llmrouter.dispatch.limits import RateLimits
from llmrouter.registry.reader import CompactedTopicReader

log = structlog.get_logger("llmrouter.fleet")
Send = Callable[[bytes, bytes], Any]  # (provider, report): not awaited; a lost report only weakens one window


class SharedProviderState(mode.Service):
    def __init__(self, *, bootstrap_servers: str, changelog: str, breakers: LocalBreakers, limits: RateLimits,
                 send: Send, worker: str, report_interval_s: float, catch_up_timeout_s: float,
                 wall: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reader = CompactedTopicReader(bootstrap_servers, changelog)
        self._breakers, self._limits, self._send = breakers, limits, send
        self._worker, self._interval_s, self._catch_up_s = worker, report_interval_s, catch_up_timeout_s
        self._wall = wall
        self.states: dict[str, dict[str, Any]] = {}  # provider -> the owner's last word (for views)

    async def on_start(self) -> None:
        await self._reader.start()
        if not await self._reader.read_to_end(self.apply, timeout_s=self._catch_up_s):
            log.warning("provider_state_catch_up_incomplete", timeout_s=self._catch_up_s)

    async def on_shutdown(self) -> None:
        await self._reader.stop()

    @mode.Service.task
    async def _follow(self) -> None:
        await self._reader.follow(self.apply)

    @mode.Service.task
    async def _report(self) -> None:
        while not self.should_stop:
            await self.sleep(self._interval_s)
            self.flush()

    def flush(self) -> None:
        """Send what this worker's calls showed since the last report, one record per provider."""
        for provider, report in self._breakers.reports.drain(self._worker).items():
            self._send(provider.encode(), report.to_bytes())

    async def apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """One changelog record: the owner's state of a provider."""
        if key is None or value is None:
            return
        provider = key.decode("utf-8", "replace")
        try:
            state = json.loads(value)
            open_until, throttled_until = state.get("open_until_s"), state.get("throttled_until_s") or 0.0
        except (ValueError, AttributeError) as exc:
            log.warning("provider_state_unreadable", provider=provider, offset=offset, error=repr(exc))
            return
        self.states[provider] = state
        now = self._wall()
        if state.get("state") == "open" and open_until and open_until > now:
            self._breakers.follow(provider, open_until - now, f"open for the group: {state.get('reason', '')}")
        if throttled_until > now:
            self._limits.hold(provider, throttled_until - now)
