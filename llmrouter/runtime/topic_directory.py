"""Which topics exist, for checking a request's ``reply_to`` at intake.

A topic that does not exist would make the result send wait for metadata for
the producer's whole timeout, holding a slot; intake rejects such a request
at once instead. The names come from the cluster's metadata, read at start and
again on a miss (at most every ``min_refresh_s``) or when older than
``max_age_s``. A topic deleted since the last read is caught later, when the
result send fails and the dead-letter path takes over.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from mode import Service

log = structlog.get_logger("llmrouter.topics")


class TopicDirectory(Service):
    def __init__(self, bootstrap_servers: str, *, max_age_s: float = 30.0, min_refresh_s: float = 1.0,
                 request_timeout_s: float = 5.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._bootstrap = bootstrap_servers
        self._max_age_s = max_age_s
        self._min_refresh_s = min_refresh_s
        self._timeout_ms = int(request_timeout_s * 1000)
        self._names: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._admin: AIOKafkaAdminClient | None = None
        self._refreshing = asyncio.Lock()

    async def on_start(self) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=self._timeout_ms)
        await self._admin.start()

    async def on_stop(self) -> None:
        if self._admin is not None:
            await self._admin.close()

    async def exists(self, topic: str) -> bool:
        age = time.monotonic() - self._read_at
        if age > self._max_age_s or (topic not in self._names and age > self._min_refresh_s):
            await self._refresh()
        return topic in self._names

    async def _refresh(self) -> None:
        async with self._refreshing:  # concurrent misses share one metadata read
            if time.monotonic() - self._read_at <= self._min_refresh_s or self._admin is None:
                return
            try:
                self._names = frozenset(await self._admin.list_topics())
            except Exception as exc:  # keep the last list; a metadata hiccup must not reject requests
                log.warning("topic_list_failed", error=repr(exc))
            self._read_at = time.monotonic()
