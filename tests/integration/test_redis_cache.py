"""L2 against real Redis servers of the tests' own (started here, killed and paused here).

Servers of our own rather than the shared one on 6379: the command counts read
from ``INFO commandstats`` must not include other sessions' commands, and the
outage tests kill and pause the server.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis

from llmrouter.cache.l2 import RedisCache
from llmrouter.infra.redis import ScratchRedis
from tests.conftest import free_port
from tests.required import missing

pytestmark = pytest.mark.redis
if shutil.which("redis-server") is None:
    missing("redis-server is not installed (infra/bootstrap.sh installs it with apt)")


class RedisServer(ScratchRedis):
    """One ``redis-server`` on a port of its own, without persistence, and its command counts."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, free_port())

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def calls(self, command: str) -> int:
        """How many times ``command`` ran since the last reset (the server's own count)."""
        with self.client() as client:
            return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))

    def reset_stats(self) -> None:
        with self.client() as client:
            client.config_resetstat()


def until(condition: Callable[[], bool], *, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(0.01)


async def until_async(condition: Callable[[], bool], *, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        await asyncio.sleep(0.01)


def make_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    yield server
    if server.running():
        server.resume()
        server.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the tests that leave it running."""
    yield from make_server(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server a test may kill or pause."""
    yield from make_server(tmp_path)


@pytest_asyncio.fixture(loop_scope="function")
async def cache(shared_server: RedisServer) -> AsyncIterator[RedisCache]:
    """A started RedisCache on the module's server, emptied, its command counts reset (same loop as the test)."""
    shared_server.reset_stats()
    with shared_server.client() as client:
        client.flushdb()  # our own server: nobody else's keys
    cache = RedisCache(shared_server.url, batch_max=256)
    await cache.start()
    yield cache
    await cache.stop()


async def test_gets_made_in_one_tick_share_one_mget(cache: RedisCache, shared_server: RedisServer):
    """64 concurrent gets (8 of them for absent keys, 8 repeats) are one MGET on the server, none a GET."""
    with shared_server.client() as client:
        client.mset({f"k{i}": f"v{i}".encode() for i in range(48)})
    shared_server.reset_stats()
    keys = [f"k{i}" for i in range(48)] + [f"absent{i}" for i in range(8)] + [f"k{i}" for i in range(8)]
    values = await asyncio.gather(*(cache.get(key) for key in keys))
    assert values == [f"v{i}".encode() for i in range(48)] + [None] * 8 + [f"v{i}".encode() for i in range(8)]
    assert (shared_server.calls("mget"), shared_server.calls("get")) == (1, 0)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.read_batches, stats.read_keys) == (56, 8, 1, 56)


async def test_a_batch_holds_at_most_batch_max_keys(shared_server: RedisServer):
    """64 distinct keys with batch_max 16 are four MGETs."""
    cache = RedisCache(shared_server.url, batch_max=16)
    await cache.start()
    try:
        shared_server.reset_stats()
        await asyncio.gather(*(cache.get(f"b{i}") for i in range(64)))
        assert shared_server.calls("mget") == 4 and cache.stats().mean_read_batch == 16
    finally:
        await cache.stop()


async def test_puts_return_at_once_and_are_written_in_one_pipeline_with_their_ttl(
        cache: RedisCache, shared_server: RedisServer):
    """100 puts: one pipelined batch of SET ... PX, and Redis holds each with the TTL given."""
    for i in range(100):
        assert cache.put(f"w{i}", b"x" * 500, ttl_s=30) is None
    assert cache.stats().queued_writes == 100  # nothing was written while the caller ran
    await cache.flush()
    assert shared_server.calls("set") == 100 and cache.stats().write_batches == 1
    with shared_server.client() as client:
        ttls = [client.pttl(f"w{i}") for i in range(100)]
        assert client.get("w99") == b"x" * 500
    assert all(29_000 < ttl <= 30_000 for ttl in ttls)


async def test_redis_expires_an_entry_at_its_ttl(cache: RedisCache, shared_server: RedisServer):
    """A 0.5 s TTL reaches Redis as such, and the entry then goes without anyone deleting it."""
    cache.put("short", b"v", ttl_s=0.5)
    await cache.flush()
    with shared_server.client() as client:
        assert 0 < client.pttl("short") <= 500
    deadline = time.monotonic() + 5
    while await cache.get("short") is not None:
        assert time.monotonic() < deadline, "Redis did not expire the entry"
        await asyncio.sleep(0.01)


async def test_a_full_write_queue_drops_the_oldest_write(shared_server: RedisServer):
    """Queue of 4, 10 puts before the writer runs: the 6 oldest are dropped and counted, the 4 newest written."""
    cache = RedisCache(shared_server.url, write_queue_max=4)
    await cache.start()
    try:
        for i in range(10):
            cache.put(f"q{i}", b"v", ttl_s=30)
        await cache.flush()
        assert cache.stats().dropped_full == 6
        with shared_server.client() as client:
            assert [client.exists(f"q{i}") for i in range(10)] == [0] * 6 + [1] * 4
    finally:
        await cache.stop()


async def test_clear_by_prefix_scans_and_leaves_other_keys(cache: RedisCache, shared_server: RedisServer):
    """2,500 keys under a prefix go in SCAN pages and UNLINK batches, never KEYS; a glob in the prefix is literal."""
    with shared_server.client() as client:
        client.mset({f"llm:v1:u.a*:{i}": b"x" for i in range(2_500)})
        client.mset({"llm:v1:u.ab:1": b"y", "llm:v1:u.b:1": b"z", "llm:v2:u.a*:1": b"w"})
    shared_server.reset_stats()
    assert await cache.clear("llm:v1:u.a*:") == 2_500
    assert shared_server.calls("keys") == 0 and shared_server.calls("scan") >= 2
    assert shared_server.calls("unlink") == 10  # batches of 256
    with shared_server.client() as client:
        assert sorted(client.keys("*")) == [b"llm:v1:u.ab:1", b"llm:v1:u.b:1", b"llm:v2:u.a*:1"]


async def test_an_invalidation_wins_over_a_write_still_queued(cache: RedisCache, shared_server: RedisServer):
    """put then delete (or clear) at once: the queued write is dropped, so the old answer does not come back."""
    cache.put("stale", b"old", ttl_s=30)
    cache.put("kept", b"new", ttl_s=30)
    assert await cache.delete(["stale"]) == 0
    cache.put("p:1", b"old", ttl_s=30)
    assert await cache.clear("p:") == 0
    await cache.flush()
    with shared_server.client() as client:
        assert (client.exists("stale"), client.exists("p:1"), client.get("kept")) == (0, 0, b"new")


async def test_redis_killed_then_restarted_is_survived_and_picked_up_again(own_server: RedisServer):
    """SIGKILL: gets answer None at once (no waiting on the 2 s timeout), puts are dropped, nothing raises;
    the same port back: the cache is up again without a restart."""
    cache = RedisCache(own_server.url, timeout_s=2.0, retry_s=0.05)
    await cache.start()
    try:
        cache.put("k", b"v", ttl_s=30)
        await cache.flush()
        assert await cache.get("k") == b"v" and cache.status() == "ok"

        own_server.kill()
        started = time.monotonic()
        first = await cache.get("k")
        first_s = time.monotonic() - started
        assert first is None and first_s < 0.5 and not cache.available
        assert cache.status().startswith("down: ")
        started = time.monotonic()
        assert await asyncio.gather(*(cache.get(f"k{i}") for i in range(100))) == [None] * 100
        assert time.monotonic() - started < 0.5
        cache.put("lost", b"v", ttl_s=30)
        assert cache.stats().dropped_failed == 1 and cache.stats().skipped_down == 100
        assert await cache.delete(["k"]) is None  # kept for when Redis is back

        own_server.start()
        await until_async(lambda: cache.available, what="the cache sees Redis back")
        cache.put("k2", b"back", ttl_s=30)
        await cache.flush()
        assert await cache.get("k2") == b"back" and cache.status() == "ok"
    finally:
        await cache.stop()


async def test_a_hung_redis_costs_one_timeout_then_nothing_and_invalidations_are_replayed(own_server: RedisServer):
    """SIGSTOP: the first get waits the 0.1 s timeout, later ones none; a delete made meanwhile is applied
    when Redis resumes, before anything is read again, and what was not deleted is still there."""
    with own_server.client() as client:
        client.mset({"gone": b"old", "kept": b"v"})
    cache = RedisCache(own_server.url, timeout_s=0.1, retry_s=0.05)
    await cache.start()
    try:
        own_server.pause()
        assert await cache.get("kept") is None and not cache.available
        assert "Timeout" in cache.status()
        started = time.monotonic()
        assert await cache.get("kept") is None and time.monotonic() - started < 0.05
        assert await cache.delete(["gone"]) is None

        own_server.resume()
        await until_async(lambda: cache.available, what="the cache sees Redis resume")
        assert await cache.get("gone") is None and await cache.get("kept") == b"v"
    finally:
        await cache.stop()


async def test_a_cache_started_while_redis_is_down_comes_up_when_it_starts(tmp_path: Path):
    """start() never raises; the probe finds Redis once it is there."""
    server = RedisServer(tmp_path)
    cache = RedisCache(server.url, retry_s=0.05)
    await cache.start()
    try:
        assert not cache.available and await cache.get("k") is None
        server.start()
        await until_async(lambda: cache.available, what="the cache sees Redis start")
        assert await cache.get("k") is None and cache.stats().misses == 1
    finally:
        await cache.stop()
        server.kill()
