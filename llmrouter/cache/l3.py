"""L3: the cache level every worker keeps on its own disk, in RocksDB.

Why not a partitioned faust Table: answers are looked up by cache key from
streams keyed by request_id (intake) so the owner of a key's partition is
usually another worker, and a lookup would need a hop through Kafka or HTTP,
slower than answering. Why not a GlobalTable: faust bug #283 (KAFKA.md).
Instead every answer put in the cache is also written to the compacted topic
``llm.router.cache`` (:mod:`llmrouter.cache.sync`), which every worker reads
whole, with no consumer group, into this store: each worker holds every
entry, so L3 answers for any key with a local read, survives a restart on the
same disk (RocksDB) and on a new one (the topic), and keeps answering while
Redis (L2) is down.

Values are :class:`~llmrouter.cache.entry.CachedAnswer` bytes; an entry past
its ``expires_at_ms`` is a miss (and deleted), and the database is opened
with RocksDB's TTL so compaction drops what nobody reads any more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rocksdict import AccessType, Options, Rdict, WriteBatch

from llmrouter.cache.entry import CachedAnswer

BATCH = 512  # deletes per write batch when a prefix is cleared
META_PREFIX = b"!meta:"  # never a cache key (they start with "llm:")


class L3Store:
    def __init__(self, path: Path, *, ttl_s: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # RocksDB's TTL only reclaims space (at compaction); expiry proper is the entry's own expires_at_ms.
        self._db = Rdict(str(path), options, access_type=AccessType.with_ttl(max(1, ttl_s)))
        self.hits = 0
        self.misses = 0
        self.expired = 0

    def close(self) -> None:
        self._db.close()

    def get(self, key: bytes, *, now_ms: int) -> CachedAnswer | None:
        """The live entry under ``key``; an unreadable or expired one is deleted and is a miss."""
        raw = self._db.get(key)
        answer = self._decode(key, raw) if raw is not None else None
        if answer is not None and answer.expired(now_ms):
            self._db.delete(key)
            self.expired += 1
            answer = None
        if answer is None:
            self.misses += 1
            return None
        self.hits += 1
        return answer

    def put(self, key: bytes, data: bytes) -> bool:
        """Keep ``data`` (CachedAnswer bytes) unless a newer entry is there already; True if kept.

        Newer wins, so replaying the topic from its start never puts an old answer over a fresh one."""
        incoming = CachedAnswer.from_bytes(data)
        current = self._decode(key, self._db.get(key))
        if current is not None and current.stored_at_ms > incoming.stored_at_ms:
            return False
        self._db.put(key, data)
        return True

    def delete(self, key: bytes) -> None:
        self._db.delete(key)

    def clear(self, prefix: bytes, *, stored_before_ms: int) -> int:
        """Delete the entries under ``prefix`` stored before ``stored_before_ms``; how many were deleted.

        The time bound makes a clear replayed from the topic harmless to what was stored after it."""
        deleted = 0
        batch = WriteBatch(raw_mode=True)
        for key, answer in self._entries(prefix):
            if answer is None or answer.stored_at_ms < stored_before_ms:
                batch.delete(key)
                deleted += 1
                if deleted % BATCH == 0:
                    self._db.write(batch)
                    batch = WriteBatch(raw_mode=True)
        self._db.write(batch)
        return deleted

    def put_meta(self, name: str, data: bytes) -> None:
        """Keep a small record of the cache's own (the popular keys' snapshot) beside the entries."""
        self._db.put(META_PREFIX + name.encode(), data)

    def get_meta(self, name: str) -> bytes | None:
        return self._db.get(META_PREFIX + name.encode())

    def count(self, prefix: bytes = b"") -> int:
        return sum(1 for _ in self._entries(prefix))

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "expired": self.expired,
                "estimated_entries": self._db.property_int_value("rocksdb.estimate-num-keys") or 0}

    def _entries(self, prefix: bytes) -> Iterator[tuple[bytes, CachedAnswer | None]]:
        it = self._db.iter()
        it.seek(prefix)
        while it.valid() and it.key().startswith(prefix):
            yield it.key(), self._decode(it.key(), it.value())
            it.next()

    @staticmethod
    def _decode(key: bytes, raw: bytes | None) -> CachedAnswer | None:
        if raw is None:
            return None
        try:
            return CachedAnswer.from_bytes(raw)
        except ValueError:
            return None  # written by a newer version or damaged: a miss, overwritten by the next answer
