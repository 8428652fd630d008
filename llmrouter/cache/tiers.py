"""Read-through over the three cache levels, promote on hit, write on answer.

Lookups go L1 (this process, bytes-bounded LRU) → L2 (Redis, shared) → L3
(this worker's RocksDB copy of the cache topic); a hit in a lower level is
promoted into the levels above it. A store writes L1, queues the Redis write
(never awaited: :class:`~llmrouter.cache.l2.RedisCache` batches it), writes
L3 and hands the entry to ``publish`` (the cache topic, so every other
worker's L3 gets it). Any level may be absent (disabled in the settings); L2
is skipped at once while Redis is down. Redis keys carry ``l2_namespace`` in
front (the app id: deployments sharing one Redis never read each other's answers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.l1 import L1Cache
from llmrouter.cache.l2 import RedisCache
from llmrouter.cache.l3 import L3Store
from llmrouter.cache.sync import Clears

LEVELS = ("l1", "l2", "l3")


@dataclass(frozen=True)
class Hit:
    level: str  # l1 | l2 | l3: the level that had it
    answer: CachedAnswer
    similarity: float | None = None  # set when the semantic index found it for a request worded differently

    def route_reason(self, now_ms: int) -> str:
        """``cache hit (l1, stored 12.3 s ago)``: the level and the entry's age, never whose request paid for
        it (in the ``anon`` and ``shared`` scopes that is another user's request id)."""
        reason = f"cache hit ({self.level}, stored {max(0, now_ms - self.answer.stored_at_ms) / 1000:.1f} s ago)"
        if self.similarity is not None:
            reason += f", a paraphrase (similarity {self.similarity:.3f})"
        return reason


class CacheTiers:
    def __init__(self, *, l1: L1Cache | None, l2: RedisCache | None, l3: L3Store | None,
                 publish: Callable[[bytes, bytes], object] | None, compress: bool,
                 now_ms: Callable[[], int], clears: Clears | None = None, l2_namespace: str = "") -> None:
        self._l1 = l1
        self._l2 = l2
        self._l3 = l3
        self._publish = publish
        self._compress = compress
        self._now_ms = now_ms
        self._clears = clears if clears is not None else Clears()
        self._l2_namespace = l2_namespace  # Redis may be shared by several deployments: their keys stay apart
        self.hits: Counter[str] = Counter()
        self.misses = 0
        self.stores = 0

    async def lookup(self, key: str, usable: Callable[[CachedAnswer], bool] | None = None) -> Hit | None:
        """The live entry of ``key`` from the highest level that has one; ``usable`` may refuse an entry
        (a disabled provider's answer): it is then a miss in every level, left where it is."""
        now = self._now_ms()
        if self._l1 is not None and (answer := self._live(key, self._l1.get(key), now, usable)) is not None:
            return self._hit("l1", answer)
        if self._l2 is not None and self._l2.available:
            raw = await self._l2.get(self._l2_namespace + key)
            if (answer := self._live(key, raw, now, usable)) is not None:
                self._put_l1(key, raw, answer)
                return self._hit("l2", answer)
        answer = self._l3.get(key.encode(), now_ms=now) if self._l3 is not None else None
        if answer is not None and not self._clears.covers(key, answer.stored_at_ms) and (
                usable is None or usable(answer)):
            raw = answer.to_bytes(compress=self._compress)
            self._put_l1(key, raw, answer)
            self._put_l2(key, raw, answer, now)
            return self._hit("l3", answer)
        self.misses += 1
        return None

    async def warm(self, key: str) -> CachedAnswer | None:
        """Bring ``key`` into L1 from a lower level without counting a lookup; its entry, or None."""
        now = self._now_ms()
        if self._l1 is not None and (answer := self._live(key, self._l1.peek(key), now)) is not None:
            return answer
        hits, misses = self.hits.copy(), self.misses
        hit = await self.lookup(key)
        self.hits, self.misses = hits, misses
        return hit.answer if hit is not None else None

    def store(self, key: str, answer: CachedAnswer) -> None:
        """Put ``answer`` in every level and on the cache topic; nothing here waits on the network."""
        raw = answer.to_bytes(compress=self._compress)
        self.stores += 1
        self._put_l1(key, raw, answer)
        self._put_l2(key, raw, answer, self._now_ms())
        if self._l3 is not None:
            self._l3.put(key.encode(), raw)
        if self._publish is not None:
            self._publish(key.encode(), raw)

    def stats(self) -> dict[str, object]:
        lookups = sum(self.hits.values()) + self.misses
        return {"lookups": lookups, "hits": dict(self.hits), "misses": self.misses, "stores": self.stores,
                "hit_rate": round(sum(self.hits.values()) / lookups, 4) if lookups else None}

    def _live(self, key: str, raw: bytes | None, now_ms: int,
              usable: Callable[[CachedAnswer], bool] | None = None) -> CachedAnswer | None:
        """The entry in ``raw`` unless it is absent, unreadable, expired, cleared since it was stored or not
        ``usable``."""
        if raw is None:
            return None
        try:
            answer = CachedAnswer.from_bytes(raw)
        except ValueError:
            return None
        if answer.expired(now_ms) or self._clears.covers(key, answer.stored_at_ms):
            return None
        return answer if usable is None or usable(answer) else None

    def _hit(self, level: str, answer: CachedAnswer) -> Hit:
        self.hits[level] += 1
        return Hit(level, answer)

    def _put_l1(self, key: str, raw: bytes, answer: CachedAnswer) -> None:
        if self._l1 is not None:
            self._l1.put(key, raw, answer.expires_at_ms)

    def _put_l2(self, key: str, raw: bytes, answer: CachedAnswer, now: int) -> None:
        ttl_s = (answer.expires_at_ms - now) / 1000.0
        if self._l2 is not None and ttl_s > 0:
            self._l2.put(self._l2_namespace + key, raw, ttl_s)

