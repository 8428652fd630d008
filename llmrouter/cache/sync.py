"""The cache topic: how every worker's L3 learns every answer, and how a clear reaches every level.

``llm.router.cache`` is compacted (and deleted by time after the cache TTL).
Its records, all keyed so that compaction keeps what matters:

* a **fill**: key = the cache key, value = :class:`~llmrouter.cache.entry.CachedAnswer` bytes;
* a **delete**: key = the cache key, value = null (a tombstone);
* a **clear**: key = ``!clear:<prefix>``, value = JSON ``{"prefix": …, "at_ms": …}``: every entry
  under the prefix stored before ``at_ms`` goes (``llm:`` clears everything; ``llm:v1:acme:`` one
  tenant of namespace version 1).

Every worker reads the topic whole with no consumer group (:class:`CacheFollower`) and applies each
record to its L1 and L3. Applying is idempotent and order-safe (newer entries win, a clear only
removes what was stored before it), so the follower simply starts from the beginning on every start.
Redis (L2) is shared: ``llmrouter cache clear`` clears it once, itself, rather than each worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import mode
import structlog

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.l1 import L1Cache
from llmrouter.cache.l3 import L3Store
from llmrouter.registry.reader import CompactedTopicReader

log = structlog.get_logger("llmrouter.cache")

CLEAR_PREFIX = b"!clear:"


@dataclass(frozen=True)
class Clear:
    prefix: str
    at_ms: int


def clear_record(prefix: str, *, at_ms: int) -> tuple[bytes, bytes]:
    """The (key, value) of a clear of every entry under ``prefix`` stored before ``at_ms``."""
    return CLEAR_PREFIX + prefix.encode(), json.dumps({"prefix": prefix, "at_ms": at_ms}).encode()


def parse_clear(key: bytes, value: bytes | None) -> Clear | None:
    """The clear a record stands for, or None when it is a fill or a delete (or a damaged clear)."""
    if not key.startswith(CLEAR_PREFIX) or value is None:
        return None
    try:
        data = json.loads(value)
        return Clear(prefix=str(data["prefix"]), at_ms=int(data["at_ms"]))
    except (ValueError, KeyError, TypeError):
        log.warning("cache_clear_unreadable", key=key[:80])
        return None


class Clears:
    """Every clear seen: the newest ``at_ms`` per prefix.

    An entry under a cleared prefix stored before the clear is stale wherever it is found: in a fill
    read after the clear (partitions are read in no particular order), in Redis (promoted there by a
    worker that had not seen the clear yet), anywhere. Checking hits against this list is what makes a
    clear exact on every worker as soon as its follower has read it; deleting entries only frees space.
    """

    def __init__(self) -> None:
        self._at: dict[str, int] = {}

    def add(self, clear: Clear) -> None:
        self._at[clear.prefix] = max(clear.at_ms, self._at.get(clear.prefix, clear.at_ms))

    def covers(self, key: str, stored_at_ms: int) -> bool:
        """True when ``key`` stored at ``stored_at_ms`` was cleared since."""
        return any(stored_at_ms < at_ms and key.startswith(prefix) for prefix, at_ms in self._at.items())

    def __len__(self) -> int:
        return len(self._at)


class CacheApplier:
    """Applies cache-topic records to this worker's L1 and L3 (pure enough to test without Kafka)."""

    def __init__(self, l1: L1Cache | None, l3: L3Store | None, clears: Clears) -> None:
        self._l1 = l1
        self._l3 = l3
        self._clears = clears
        self.applied = 0
        self.clears = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        self.applied += 1
        if key.startswith(CLEAR_PREFIX):
            clear = parse_clear(key, value)
            if clear is not None:
                self.clear(clear)
            return
        if value is None:
            if self._l1 is not None:
                self._l1.delete(key.decode(errors="replace"))
            if self._l3 is not None:
                self._l3.delete(key)
            return
        if self._l3 is None:
            return
        try:
            answer = CachedAnswer.from_bytes(value)
        except ValueError as exc:
            log.warning("cache_fill_unreadable", key=key[:80], error=str(exc))
            return
        if not self._clears.covers(key.decode(errors="replace"), answer.stored_at_ms):
            self._l3.put(key, value)

    def clear(self, clear: Clear) -> None:
        self.clears += 1
        self._clears.add(clear)
        if self._l1 is not None:
            self._l1.clear(clear.prefix)
        if self._l3 is not None:
            deleted = self._l3.clear(clear.prefix.encode(), stored_before_ms=clear.at_ms)
            log.info("cache_cleared", prefix=clear.prefix, at_ms=clear.at_ms, l3_deleted=deleted)


class CacheFollower(mode.Service):
    """Reads ``llm.router.cache`` from its beginning, then follows it, into :class:`CacheApplier`."""

    def __init__(self, bootstrap_servers: str, topic: str, applier: CacheApplier, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._reader = CompactedTopicReader(bootstrap_servers, topic)
        self._applier = applier
        self.caught_up = False

    async def on_start(self) -> None:
        await self._reader.start()

    async def on_shutdown(self) -> None:
        await self._reader.stop()

    @mode.Service.task
    async def _follow(self) -> None:
        self.caught_up = await self._reader.read_to_end(self._apply, timeout_s=3600.0)
        await self._reader.follow(self._apply)

    async def _apply(self, key: bytes | None, value: bytes | None, _offset: int) -> None:
        self._applier.apply(key, value)
