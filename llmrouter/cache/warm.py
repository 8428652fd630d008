"""Cache warming (F033), in a timer off the request path.

Every ``cache.warm_interval_s`` the warmer takes the ``cache.warm_top_k`` most
popular keys (:class:`~llmrouter.cache.hot.HotKeys`, touched by every lookup):

* **warm**: a key not in L1 is brought there from Redis or L3, so the next
  request for it does not pay the lower level;
* **refresh ahead**: a key whose entry expires within ``cache.refresh_ahead_s``
  is asked again (``refresh``, the request that last looked it up, at low
  priority, not streamed) of the provider whose answer the entry holds, and of
  no other: the new answer replaces the entry before anyone misses it. When
  that provider may not be asked now (it costs money, an override disables
  it, it is gone) nothing is refreshed and the entry expires; an entry that
  names no provider is not refreshed;
* **snapshot**: the popular keys are written beside L3, so a restarted worker
  warms its empty L1 with them at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mode
import structlog

from llmrouter.cache.hot import HotKeys
from llmrouter.cache.l3 import L3Store
from llmrouter.cache.tiers import CacheTiers

log = structlog.get_logger("llmrouter.cache")
SNAPSHOT = "hot_keys"


class CacheWarmer(mode.Service):
    def __init__(self, *, hot: HotKeys, tiers: CacheTiers, l3: L3Store | None, top_k: int, interval_s: float,
                 refresh_ahead_ms: int, now_ms: Callable[[], int],
                 refresh: Callable[[bytes, str], Awaitable[bool]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hot = hot
        self._tiers = tiers
        self._l3 = l3
        self._top_k = top_k
        self._interval_s = interval_s
        self._refresh_ahead_ms = refresh_ahead_ms
        self._now_ms = now_ms
        self.refresh = refresh  # (request bytes, provider) -> stored?; set by the app once the answer stage exists
        self.warmed = 0
        self.refreshed = 0
        self.refresh_failures = 0

    async def on_start(self) -> None:
        snapshot = self._l3.get_meta(SNAPSHOT) if self._l3 is not None else None
        if snapshot:
            try:
                loaded = self._hot.load(snapshot)
            except ValueError as exc:
                log.warning("hot_keys_snapshot_unreadable", error=str(exc))
            else:
                log.info("hot_keys_loaded", keys=loaded)

    @mode.Service.task
    async def _periodically(self) -> None:
        await self.warm_once()  # at start: a restarted worker's L1 is empty
        async for _ in self.itertimer(self._interval_s, name="cache_warm"):
            await self.warm_once()

    async def warm_once(self) -> None:
        """One pass: warm, refresh what is about to expire, snapshot."""
        now = self._now_ms()
        for key, _count, request in self._hot.top(self._top_k):
            answer = await self._tiers.warm(key)
            if answer is None:
                continue
            self.warmed += 1
            if (self.refresh is not None and self._refresh_ahead_ms and answer.provider
                    and answer.expires_at_ms - now <= self._refresh_ahead_ms):
                await self._refresh(key, request, answer.provider)
        if self._l3 is not None:
            self._l3.put_meta(SNAPSHOT, self._hot.to_bytes())

    async def _refresh(self, key: str, request: bytes, provider: str) -> None:
        try:
            ok = await self.refresh(request, provider)
        except Exception as exc:  # a refresh is a nicety: the entry still serves until it expires
            ok = False
            log.warning("cache_refresh_failed", key=key[:40], error=repr(exc))
        if ok:
            self.refreshed += 1
        else:
            self.refresh_failures += 1

    def stats(self) -> dict[str, int]:
        return {"tracked_keys": len(self._hot), "warmed": self.warmed, "refreshed": self.refreshed,
                "refresh_failures": self.refresh_failures}
