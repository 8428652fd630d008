"""L3 (real RocksDB), the cache-topic applier and clears, and the read-through over L1 and L3."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.l1 import L1Cache
from llmrouter.cache.l3 import L3Store
from llmrouter.cache.sync import CacheApplier, Clears, clear_record, parse_clear
from llmrouter.cache.tiers import CacheTiers

NOW = 1_700_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


def answer(text: str = "forty-two", *, stored: int = NOW, ttl_ms: int = 60_000) -> CachedAnswer:
    return CachedAnswer(text=text, provider="together", model="m", finish_reason="stop", prompt_tokens=3,
                        completion_tokens=2, cost_usd=0.001, stored_at_ms=stored, expires_at_ms=stored + ttl_ms)


@pytest.fixture
def l3(tmp_path: Path) -> L3Store:
    store = L3Store(tmp_path / "l3", ttl_s=3600)
    yield store
    store.close()


def test_l3_keeps_the_newer_entry_and_drops_expired_ones(l3: L3Store) -> None:
    assert l3.put(b"llm:v1:anon:a", answer("new", stored=NOW + 5).to_bytes(compress=True))
    assert not l3.put(b"llm:v1:anon:a", answer("old", stored=NOW).to_bytes(compress=True))
    assert l3.get(b"llm:v1:anon:a", now_ms=NOW + 6).text == "new"
    assert l3.get(b"llm:v1:anon:a", now_ms=NOW + 5 + 60_000) is None  # expired: a miss, and gone
    assert l3.count() == 0


def test_l3_survives_a_reopen(tmp_path: Path) -> None:
    store = L3Store(tmp_path / "l3", ttl_s=3600)
    store.put(b"llm:v1:anon:a", answer().to_bytes(compress=False))
    store.close()
    again = L3Store(tmp_path / "l3", ttl_s=3600)
    assert again.get(b"llm:v1:anon:a", now_ms=NOW).text == "forty-two"
    again.close()


def test_l3_clear_removes_only_the_prefix_and_only_what_was_stored_before(l3: L3Store) -> None:
    for key, stored in ((b"llm:v1:u.a:1", NOW), (b"llm:v1:u.a:2", NOW + 10), (b"llm:v1:u.b:1", NOW)):
        l3.put(key, answer(stored=stored).to_bytes(compress=False))
    assert l3.clear(b"llm:v1:u.a:", stored_before_ms=NOW + 5) == 1
    assert l3.count(b"llm:v1:u.a:") == 1 and l3.count(b"llm:v1:u.b:") == 1


def test_clear_records_round_trip_and_damaged_ones_are_ignored() -> None:
    key, value = clear_record("llm:v1:", at_ms=NOW)
    clear = parse_clear(key, value)
    assert (clear.prefix, clear.at_ms) == ("llm:v1:", NOW)
    assert parse_clear(key, b"{not json") is None
    assert parse_clear(b"llm:v1:anon:x", value) is None  # a fill's key is never a clear


def test_a_fill_read_after_a_clear_that_covers_it_is_not_applied(l3: L3Store) -> None:
    """Partitions are read in no particular order: an old fill may come after the clear."""
    clears = Clears()
    applier = CacheApplier(None, l3, clears)
    applier.apply(*clear_record("llm:v1:", at_ms=NOW + 100))
    applier.apply(b"llm:v1:anon:old", answer(stored=NOW).to_bytes(compress=False))
    applier.apply(b"llm:v1:anon:new", answer(stored=NOW + 200).to_bytes(compress=False))
    assert l3.get(b"llm:v1:anon:old", now_ms=NOW + 300) is None
    assert l3.get(b"llm:v1:anon:new", now_ms=NOW + 300) is not None


def test_a_tombstone_deletes_from_l1_and_l3(l3: L3Store) -> None:
    clock = Clock()
    l1 = L1Cache(1 << 20, clock=clock)
    raw = answer().to_bytes(compress=False)
    l1.put("llm:v1:anon:k", raw, NOW + 60_000)
    applier = CacheApplier(l1, l3, Clears())
    applier.apply(b"llm:v1:anon:k", raw)
    applier.apply(b"llm:v1:anon:k", None)
    assert l1.get("llm:v1:anon:k") is None and l3.get(b"llm:v1:anon:k", now_ms=NOW) is None


async def test_read_through_promotes_an_l3_hit_into_l1(l3: L3Store) -> None:
    clock = Clock()
    l1 = L1Cache(1 << 20, clock=clock)
    published: list[tuple[bytes, bytes]] = []
    writer = CacheTiers(l1=None, l2=None, l3=l3, publish=lambda k, v: published.append((k, v)), compress=True,
                        now_ms=clock)
    writer.store("llm:v1:anon:k", answer())
    assert published and published[0][0] == b"llm:v1:anon:k"
    reader = CacheTiers(l1=l1, l2=None, l3=l3, publish=None, compress=True, now_ms=clock)
    first, second = await reader.lookup("llm:v1:anon:k"), await reader.lookup("llm:v1:anon:k")
    assert (first.level, second.level) == ("l3", "l1")
    assert second.answer == answer()
    assert await reader.lookup("llm:v1:anon:other") is None
    assert reader.stats()["hits"] == {"l3": 1, "l1": 1} and reader.stats()["misses"] == 1


async def test_a_cleared_entry_is_not_served_from_any_level(l3: L3Store) -> None:
    clock = Clock()
    clears = Clears()
    tiers = CacheTiers(l1=L1Cache(1 << 20, clock=clock), l2=None, l3=l3, publish=None, compress=False,
                       now_ms=clock, clears=clears)
    tiers.store("llm:v1:anon:k", answer())
    clock.ms += 10
    clears.add(parse_clear(*clear_record("llm:v1:anon:", at_ms=clock.ms)))
    assert await tiers.lookup("llm:v1:anon:k") is None
    tiers.store("llm:v1:anon:k", answer("fresh", stored=clock.ms + 1))
    assert (await tiers.lookup("llm:v1:anon:k")).answer.text == "fresh"


async def test_an_expired_entry_is_a_miss_in_every_level(l3: L3Store) -> None:
    clock = Clock()
    tiers = CacheTiers(l1=L1Cache(1 << 20, clock=clock), l2=None, l3=l3, publish=None, compress=False, now_ms=clock)
    tiers.store("llm:v1:anon:k", answer(ttl_ms=1000))
    clock.ms += 1000
    assert await tiers.lookup("llm:v1:anon:k") is None
