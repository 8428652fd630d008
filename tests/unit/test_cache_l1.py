"""L1: least recently used out first, bounded in bytes, each entry with its own expiry; a clock moved by hand."""

from __future__ import annotations

import tracemalloc

import pytest

from llmrouter.cache.l1 import ENTRY_OVERHEAD_BYTES, L1Cache, L1Stats


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000

    def __call__(self) -> int:
        return self.now_ms


def charge(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_stored_value_is_read_back_until_it_expires(clock):
    """get returns the bytes before expires_at and None from then on, counting the expiry."""
    cache = L1Cache(10_000, clock=clock)
    cache.put("k", b"answer", expires_at_ms=2_000)
    assert cache.get("k") == b"answer"
    clock.now_ms = 2_000
    assert cache.get("k") is None
    assert cache.stats() == L1Stats(entries=0, bytes=0, max_bytes=10_000, hits=1, misses=1, evictions=0, expired=1)


def test_the_least_recently_used_entry_goes_first_when_bytes_run_out(clock):
    """Room for two entries: reading 'a' makes 'b' the coldest, so 'c' pushes 'b' out."""
    value = b"x" * 100
    cache = L1Cache(2 * charge("a", value), clock=clock)
    cache.put("a", value, 10_000)
    cache.put("b", value, 10_000)
    assert cache.get("a") == value
    cache.put("c", value, 10_000)
    assert cache.get("b") is None and cache.get("a") == value and cache.get("c") == value
    assert cache.stats().evictions == 1


def test_the_bound_is_in_bytes_not_entries(clock):
    """One large value pushes out several small ones; the charged bytes never exceed the bound."""
    cache = L1Cache(5 * charge("k0", b"s" * 10), clock=clock)
    for i in range(5):
        cache.put(f"k{i}", b"s" * 10, 10_000)
    cache.put("big", b"L" * (3 * charge("k0", b"s" * 10)), 10_000)
    stats = cache.stats()
    assert stats.bytes <= stats.max_bytes and cache.get("big") is not None
    assert stats.evictions >= 3 and len(cache) == stats.entries


def test_charged_bytes_follow_every_change(clock):
    """put, replace, delete and clear keep the byte count exact."""
    cache = L1Cache(1_000_000, clock=clock)
    cache.put("a", b"1" * 10, 5_000)
    cache.put("a", b"2" * 30, 5_000)  # replace
    cache.put("b", b"3" * 7, 5_000)
    assert cache.stats().bytes == charge("a", b"2" * 30) + charge("b", b"3" * 7)
    assert cache.delete("a") and not cache.delete("a")
    assert cache.stats().bytes == charge("b", b"3" * 7)
    cache.clear()
    assert cache.stats().bytes == 0 and len(cache) == 0


def test_a_value_already_expired_or_larger_than_the_cache_is_not_stored(clock):
    """Neither is kept, and an older value under the same key goes as it is stale."""
    cache = L1Cache(charge("k", b"x" * 100), clock=clock)
    cache.put("k", b"x" * 100, 5_000)
    cache.put("k", b"y", expires_at_ms=clock.now_ms)
    assert cache.get("k") is None
    cache.put("k", b"x" * 100, 5_000)
    cache.put("k", b"x" * 101, 5_000)
    assert cache.get("k") is None and cache.stats().bytes == 0


def test_expired_entries_at_the_cold_end_count_as_expired_not_evicted(clock):
    """Making room by dropping an expired entry is not an eviction."""
    value = b"v" * 50
    cache = L1Cache(2 * charge("a", value), clock=clock)
    cache.put("a", value, 1_500)
    cache.put("b", value, 9_000)
    clock.now_ms = 2_000
    cache.put("c", value, 9_000)
    assert cache.stats().expired == 1 and cache.stats().evictions == 0


def test_clear_by_prefix_removes_only_that_prefix(clock):
    """clear('llm:v1:u.alice:') leaves bob's and other versions' entries."""
    cache = L1Cache(1_000_000, clock=clock)
    for key in ("llm:v1:u.alice:1", "llm:v1:u.alice:2", "llm:v1:u.bob:1", "llm:v2:u.alice:1"):
        cache.put(key, b"x", 5_000)
    assert cache.clear("llm:v1:u.alice:") == 2
    assert cache.get("llm:v1:u.bob:1") and cache.get("llm:v2:u.alice:1") and len(cache) == 2


def test_the_charge_per_entry_is_close_to_what_cpython_really_allocates():
    """tracemalloc over 20k realistic entries: max_size is never exceeded in real memory, nor far from it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = L1Cache(1 << 30, clock=lambda: 0)
        for i in range(20_000):
            cache.put(f"llm:v1:u.user{i % 50}:{i:064x}", i.to_bytes(8, "little") * 64, 1_800_000_000_000 + i)
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    charged = cache.stats().bytes
    assert allocated <= charged <= 1.1 * allocated
