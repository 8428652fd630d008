"""The popular cache keys: a bounded top-k with decaying counts (pure, clock injected).

Every lookup at intake touches its key. Counts halve every ``half_life_s``, so
popularity follows recent traffic, and at most ``capacity`` keys are tracked:
a new key takes the place of the least popular one and inherits its count
(the Space-Saving rule: a key seen often enough always gets in, and no count
is ever below the truth). Each key keeps the last request that touched it (the
upstream bytes), so a background task can ask for a fresh answer before the
cached one expires. The cache warmer (:mod:`llmrouter.cache.warm`) reads the
top of it; a snapshot (:meth:`HotKeys.to_bytes`) survives a restart.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    score: float  # log(count) + decay * (time of the count): a decayed count without the clock (see HotKeys)
    request: bytes


class HotKeys:
    """Decaying counts kept as time-free scores, so finding the least popular key is a heap pop.

    Every count decays by the same factor, so their order does not change as time passes:
    ``count * exp(-decay * (now - t))`` is ``exp(score - decay * now)`` with ``score = log(count) +
    decay * t``, and the key with the smallest score is the least popular at any moment. A min-heap
    of (score, key) finds it; a touch pushes the key's new score and leaves the old one to be skipped
    when it surfaces (the heap is rebuilt when stale entries outnumber live ones three to one). A
    touch costs O(log capacity), where a scan for the coldest key cost O(capacity) per new key.
    """

    def __init__(self, capacity: int, *, half_life_s: float, clock: Callable[[], float]) -> None:
        if capacity < 1 or half_life_s <= 0:
            raise ValueError("HotKeys needs a capacity of at least 1 and a positive half-life")
        self.capacity = capacity
        self._decay_per_s = math.log(2) / half_life_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def touch(self, key: str, request: bytes) -> None:
        """One more lookup of ``key``, asked by ``request`` (kept for a refresh)."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            inherited = 0.0
            if len(self._entries) >= self.capacity:
                inherited = self._count(self._entries.pop(self._pop_coldest()), now)
            self._set(key, _Entry(self._score(inherited + 1.0, now), request))
            return
        self._set(key, _Entry(self._score(self._count(entry, now) + 1.0, now), request))

    def _set(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        heapq.heappush(self._heap, (entry.score, key))
        if len(self._heap) > 4 * max(len(self._entries), 16):
            self._heap = [(e.score, k) for k, e in self._entries.items()]
            heapq.heapify(self._heap)

    def _pop_coldest(self) -> str:
        """The tracked key with the smallest score (stale heap entries skipped and dropped)."""
        while True:
            score, key = heapq.heappop(self._heap)
            entry = self._entries.get(key)
            if entry is not None and entry.score == score:
                return key

    def _score(self, count: float, now: float) -> float:
        return math.log(count) + self._decay_per_s * now if count > 0 else -math.inf

    def top(self, k: int) -> list[tuple[str, float, bytes]]:
        """The ``k`` most popular keys now: (key, decayed count, last request), most popular first."""
        now = self._clock()
        ranked = sorted(((key, self._count(e, now), e.request) for key, e in self._entries.items()),
                        key=lambda item: item[1], reverse=True)
        return ranked[:k]

    def forget(self, prefix: str) -> None:
        """Drop the keys under ``prefix`` (a clear: they are not worth warming)."""
        for key in [key for key in self._entries if key.startswith(prefix)]:
            del self._entries[key]  # their heap entries are skipped as stale

    def to_bytes(self) -> bytes:
        now = self._clock()
        return json.dumps([[key, self._count(e, now), e.request.hex()] for key, e in self._entries.items()]).encode()

    def load(self, data: bytes) -> int:
        """Counts from a snapshot, as if touched now; keys already tracked keep the larger count."""
        now = self._clock()
        loaded = 0
        for key, count, request in sorted(json.loads(data), key=lambda item: item[1], reverse=True):
            if len(self._entries) >= self.capacity and key not in self._entries:
                break
            current = self._entries.get(key)
            if current is None or self._count(current, now) < count:
                self._set(key, _Entry(self._score(float(count), now), bytes.fromhex(request)))
                loaded += 1
        return loaded

    def _count(self, entry: _Entry, now: float) -> float:
        """The entry's count decayed to ``now``."""
        return math.exp(entry.score - self._decay_per_s * now)
