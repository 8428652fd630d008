"""Popular keys (decaying top-k, Space-Saving replacement) and one warming pass over real L1/L3."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.hot import HotKeys
from llmrouter.cache.l1 import L1Cache
from llmrouter.cache.l3 import L3Store
from llmrouter.cache.tiers import CacheTiers
from llmrouter.cache.warm import SNAPSHOT, CacheWarmer

NOW_MS = 1_700_000_000_000


class Clock:
    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def test_the_most_touched_keys_come_first_and_counts_fade():
    clock = Clock()
    hot = HotKeys(10, half_life_s=60, clock=clock)
    for key, times in (("a", 5), ("b", 3), ("c", 1)):
        for _ in range(times):
            hot.touch(key, key.encode())
    assert [k for k, _, _ in hot.top(2)] == ["a", "b"]
    clock.t = 60.0
    assert hot.top(1)[0][1] == pytest.approx(2.5)  # one half-life later
    for _ in range(4):
        hot.touch("c", b"c2")
    assert hot.top(1)[0][0] == "c" and hot.top(1)[0][2] == b"c2"  # recent traffic wins; the last request kept


def test_a_new_key_replaces_the_coldest_and_inherits_its_count():
    clock = Clock()
    hot = HotKeys(2, half_life_s=60, clock=clock)
    hot.touch("a", b"")
    hot.touch("a", b"")
    hot.touch("b", b"")
    hot.touch("c", b"")  # b (1) goes; c starts at 1 + 1
    assert {k: c for k, c, _ in hot.top(5)} == {"a": 2.0, "c": 2.0}


def test_the_heap_keeps_the_same_keys_and_counts_as_a_scan_for_the_coldest():
    """20,000 random touches over 300 keys into 50 slots, the clock moving on between them: the same
    keys, with the same counts, as the plain Space-Saving rule that scans every entry for the coldest."""
    import math
    import random

    rng = random.Random(7)
    clock = Clock()
    hot = HotKeys(50, half_life_s=30, clock=clock)
    decay = math.log(2) / 30
    reference: dict[str, tuple[float, float]] = {}  # key -> (count, at_s)

    def count(key: str) -> float:
        c, at = reference[key]
        return c * math.exp(-decay * (clock.t - at))

    for _ in range(20_000):
        clock.t += rng.random() * 0.05
        key = f"k{int(rng.paretovariate(1.2)) % 300}"
        hot.touch(key, b"")
        if key in reference:
            reference[key] = (count(key) + 1.0, clock.t)
            continue
        inherited = 0.0
        if len(reference) >= 50:
            coldest = min(reference, key=count)
            inherited = count(coldest)
            del reference[coldest]
        reference[key] = (inherited + 1.0, clock.t)
    ours = {key: c for key, c, _ in hot.top(50)}
    assert set(ours) == set(reference)
    assert all(ours[key] == pytest.approx(count(key), rel=1e-9) for key in reference)


def test_a_snapshot_restores_the_counts_and_forget_drops_a_prefix():
    clock = Clock()
    hot = HotKeys(10, half_life_s=60, clock=clock)
    for key in ("llm:v1:anon:x", "llm:v1:anon:x", "llm:v1:u.a:y"):
        hot.touch(key, b"req")
    again = HotKeys(10, half_life_s=60, clock=Clock(500.0))
    assert again.load(hot.to_bytes()) == 2
    assert again.top(1)[0][:2] == ("llm:v1:anon:x", 2.0) and again.top(1)[0][2] == b"req"
    again.forget("llm:v1:u.a:")
    assert [k for k, _, _ in again.top(5)] == ["llm:v1:anon:x"]


def answer(text: str, expires_ms: int) -> CachedAnswer:
    return CachedAnswer(text=text, provider="p", model="m", finish_reason="stop", prompt_tokens=1,
                        completion_tokens=1, cost_usd=0.0, stored_at_ms=NOW_MS, expires_at_ms=expires_ms)


async def test_a_warming_pass_fills_l1_refreshes_what_expires_soon_and_snapshots(tmp_path: Path):
    l3 = L3Store(tmp_path / "l3", ttl_s=3600)
    try:
        writer = CacheTiers(l1=None, l2=None, l3=l3, publish=None, compress=True, now_ms=lambda: NOW_MS)
        writer.store("llm:v1:anon:soon", answer("old", NOW_MS + 10_000))
        writer.store("llm:v1:anon:later", answer("fine", NOW_MS + 3_000_000))
        l1 = L1Cache(1 << 20, clock=lambda: NOW_MS)
        tiers = CacheTiers(l1=l1, l2=None, l3=l3, publish=None, compress=True, now_ms=lambda: NOW_MS)
        hot = HotKeys(10, half_life_s=600, clock=Clock())
        for key in ("llm:v1:anon:soon", "llm:v1:anon:later", "llm:v1:anon:gone"):
            hot.touch(key, key.encode())
        asked: list[bytes] = []

        async def refresh(request: bytes, provider: str) -> bool:
            assert provider == "p"  # the provider the entry names: only it is asked again
            asked.append(request)
            return True

        warmer = CacheWarmer(hot=hot, tiers=tiers, l3=l3, top_k=10, interval_s=30, refresh_ahead_ms=60_000,
                             now_ms=lambda: NOW_MS, refresh=refresh)
        await warmer.warm_once()
        assert l1.peek("llm:v1:anon:soon") and l1.peek("llm:v1:anon:later")
        assert asked == [b"llm:v1:anon:soon"]  # only the one expiring within a minute
        assert warmer.stats() == {"tracked_keys": 3, "warmed": 2, "refreshed": 1, "refresh_failures": 0}
        assert tiers.stats()["lookups"] == 0  # warming is not traffic
        assert HotKeys(10, half_life_s=600, clock=Clock()).load(l3.get_meta(SNAPSHOT)) == 3
    finally:
        l3.close()
