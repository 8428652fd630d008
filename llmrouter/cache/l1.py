"""L1: the in-process cache, least recently used first out, bounded in bytes (F031).

Values are the bytes of a :class:`~llmrouter.cache.entry.CachedAnswer`
(compressed when ``cache_config.compression`` says so), each with its own
expiry. The bound is ``cache_config.max_size``; every entry is charged::

    len(key) + len(value) + ENTRY_OVERHEAD_BYTES

Keys are ASCII (see :mod:`llmrouter.cache.keys`), so ``len(key)`` is their
size in bytes. :data:`ENTRY_OVERHEAD_BYTES` is what CPython spends around
them, taken from ``sys.getsizeof`` on this interpreter: the ``str`` and
``bytes`` object headers, the expiry ``int``, the ``(value, expiry)`` tuple
(49 + 33 + 32 + 56 = 170 bytes on CPython 3.11), plus
:data:`TABLE_SLOT_BYTES` for the entry's share of the ``OrderedDict`` (hash
table and order links: ``sys.getsizeof`` of an ``OrderedDict`` divided by its
length is 66 to 92 bytes between 1,000 and 300,000 entries, since the table
grows by doubling). ``tracemalloc`` agrees: 234 to 264 bytes per entry over
the same range, against 266 charged. So ``max_size`` is close to the real
memory the cache holds, never far under it.

Time is a wall-clock millisecond clock (injected), the clock of
``CachedAnswer.expires_at_ms``, so an entry expires at the same moment in
every level. Expired entries are dropped when read or when they reach the
cold end. Not thread-safe: one event loop owns it.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["L1Cache", "L1Stats", "ENTRY_OVERHEAD_BYTES", "TABLE_SLOT_BYTES", "wall_clock_ms"]

TABLE_SLOT_BYTES = 96
ENTRY_OVERHEAD_BYTES = (sys.getsizeof("") + sys.getsizeof(b"") + sys.getsizeof(2**40)
                        + sys.getsizeof((b"", 0)) + TABLE_SLOT_BYTES)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class L1Stats:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    expired: int


class L1Cache:
    def __init__(self, max_bytes: int, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        if max_bytes < 1:
            raise ValueError(f"the L1 cache needs at least 1 byte, not {max_bytes}")
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, int]] = OrderedDict()  # key -> (value, expires_at_ms); LRU first
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        """The value, now the most recently used; None if absent or expired (then dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        if entry[1] <= self._clock():
            self._drop(key, entry[0])
            self._expired += 1
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return entry[0]

    def peek(self, key: str) -> bytes | None:
        """The value if present and live, without counting a hit or a miss or moving it (for the warmer)."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None and entry[1] > self._clock() else None

    def put(self, key: str, value: bytes, expires_at_ms: int) -> None:
        """Store (or replace) ``key``, evicting from the cold end until it fits.

        A value that is already expired, or larger than the whole cache, is not
        stored (and an older value under ``key`` goes: it is stale now).
        """
        self.delete(key)
        charge = _charge(key, value)
        now_ms = self._clock()
        if expires_at_ms <= now_ms or charge > self.max_bytes:
            return
        while self._bytes + charge > self.max_bytes:
            cold_key, (cold_value, cold_expiry) = self._entries.popitem(last=False)
            self._bytes -= _charge(cold_key, cold_value)
            if cold_expiry <= now_ms:
                self._expired += 1
            else:
                self._evictions += 1
        self._entries[key] = (value, expires_at_ms)
        self._bytes += charge

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._drop(key, entry[0])
        return True

    def clear(self, prefix: str | None = None) -> int:
        """Remove every entry (``prefix=None``) or those whose key starts with ``prefix``; how many went."""
        if prefix is None:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return count
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self.delete(key)
        return len(doomed)

    def stats(self) -> L1Stats:
        return L1Stats(entries=len(self._entries), bytes=self._bytes, max_bytes=self.max_bytes, hits=self._hits,
                       misses=self._misses, evictions=self._evictions, expired=self._expired)

    def _drop(self, key: str, value: bytes) -> None:
        del self._entries[key]
        self._bytes -= _charge(key, value)


def _charge(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES
