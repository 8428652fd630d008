"""L2: the cache every worker shares, in Redis (F031), that never holds a request up.

Reads are batched. :meth:`RedisCache.get` queues its key and waits; one reader
task sends every key queued so far as one ``MGET`` (at most ``batch_max``
keys, the same key once), then the keys that queued while that ``MGET`` was
on the wire, and so on. Gets made in the same event-loop tick therefore share
one command, and under load a batch grows to what arrives in one round trip,
with one connection's worth of CPU per batch instead of per key.

Writes never make the caller wait. :meth:`RedisCache.put` appends to a
bounded queue (when full, the oldest write is dropped and counted) and a
writer task sends the queue in pipelined batches of ``SET key value PX ttl``.
:meth:`RedisCache.flush` waits for the queue to be written (tests, shutdown).

Invalidation is ordered after writes: :meth:`delete` and :meth:`clear` first
drop matching writes still queued and wait for a batch on the wire to land,
then ``UNLINK`` (``clear`` walks the prefix with ``SCAN``, never ``KEYS``, and
unlinks in batches). One that cannot reach Redis is kept (up to
``write_queue_max``, the oldest dropped and counted) and replayed before the
cache is used again, so an answer invalidated during an outage is not served
after it.

Redis down. A connection error or a timeout marks the cache *down*: from then
on ``get`` answers None at once (a miss: the caller goes on to L3) and
``put`` drops the write (counted), so no request waits on a dead socket. A
probe task pings every ``retry_s``; when Redis answers, the kept
invalidations are replayed and the cache is *up* again, without a restart.
Redis errors are never raised to callers; they are counted and shown by
:meth:`status` (``"ok"`` or ``"down: <reason>"``).

Timeouts. ``timeout_s`` (``cache.redis_timeout_s``, 0.1 s by default) bounds
connecting and each reply. A healthy Redis on loopback or a LAN answers a
batch in well under a millisecond, so 100 ms without a reply means it is hung
or swamped, and one request paying 100 ms once is better than every request
paying it. A stopped Redis costs nothing: the refused connection fails at
once. redis-py's own retries are turned off; the probe is the retry.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RedisCache", "L2Stats"]

log = structlog.get_logger("llmrouter.cache")

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
_SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class L2Stats:
    hits: int
    misses: int
    skipped_down: int  # gets answered None at once because Redis was down
    errors: int
    read_batches: int
    read_keys: int
    writes: int
    write_batches: int
    dropped_full: int  # writes pushed out of a full queue
    dropped_failed: int  # writes dropped because Redis was down or refused them
    lost_invalidations: int  # kept invalidations pushed out while Redis was down
    queued_writes: int

    @property
    def mean_read_batch(self) -> float:
        return self.read_keys / self.read_batches if self.read_batches else 0.0

    @property
    def mean_write_batch(self) -> float:
        return self.writes / self.write_batches if self.write_batches else 0.0


class RedisCache:
    def __init__(self, url: str, *, timeout_s: float = 0.1, retry_s: float = 1.0, batch_max: int = 256,
                 write_queue_max: int = 10_000) -> None:
        if batch_max < 1 or write_queue_max < 1:
            raise ValueError("batch_max and write_queue_max must be at least 1")
        self.url, self.timeout_s, self.retry_s, self.batch_max = url, timeout_s, retry_s, batch_max
        self._client: Redis | None = None
        self._down_reason: str | None = "not started"
        self._pending: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._writes: collections.deque[tuple[str, bytes, int]] = collections.deque(maxlen=write_queue_max)
        self._invalidations: collections.deque[tuple[str, str | list[str]]] = collections.deque(maxlen=write_queue_max)
        self._read_wakeup = asyncio.Event()
        self._write_wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._counts = collections.Counter[str]()

    # life cycle

    async def start(self) -> None:
        """Connect (or start probing if Redis does not answer) and start the reader and writer."""
        if self._client is not None:
            raise RuntimeError("this RedisCache is started already")
        self._client = Redis.from_url(self.url, socket_timeout=self.timeout_s,
                                      socket_connect_timeout=self.timeout_s, retry=Retry(NoBackoff(), 0))
        self._reader = asyncio.create_task(self._read_loop(), name="l2-reader")
        self._writer = asyncio.create_task(self._write_loop(), name="l2-writer")
        try:
            await self._client.ping()
        except (RedisError, *_UNREACHABLE) as exc:
            self._mark_down(exc)
            return
        self._down_reason = None

    async def stop(self, *, flush_timeout_s: float = 1.0) -> None:
        """Write what is queued (for at most ``flush_timeout_s``), then stop and close the connections."""
        if self.available:
            try:
                await asyncio.wait_for(self.flush(), flush_timeout_s)
            except asyncio.TimeoutError:
                pass
        self._down_reason = "stopped"
        tasks = [task for task in (self._reader, self._writer, self._probe) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reader = self._writer = self._probe = None
        self._answer_pending_with_none()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def available(self) -> bool:
        return self._down_reason is None

    def status(self) -> str:
        return "ok" if self._down_reason is None else f"down: {self._down_reason}"

    def stats(self) -> L2Stats:
        return L2Stats(queued_writes=len(self._writes), **{name: self._counts[name] for name in (
            "hits", "misses", "skipped_down", "errors", "read_batches", "read_keys", "writes", "write_batches",
            "dropped_full", "dropped_failed", "lost_invalidations")})

    # reads

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or None (absent, expired, or Redis down: a miss either way)."""
        if self._down_reason is not None:
            self._counts["skipped_down"] += 1
            return None
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append(future)
        self._read_wakeup.set()
        return await future

    async def _read_loop(self) -> None:
        while True:
            await self._read_wakeup.wait()
            self._read_wakeup.clear()
            while self._pending:
                await self._mget(self._take_batch())

    def _take_batch(self) -> dict[str, list[asyncio.Future[bytes | None]]]:
        """The first ``batch_max`` keys queued (all of them, usually) and their waiters."""
        if len(self._pending) <= self.batch_max:
            batch, self._pending = self._pending, {}
            return batch
        keys = list(itertools.islice(self._pending, self.batch_max))
        return {key: self._pending.pop(key) for key in keys}

    async def _mget(self, batch: dict[str, list[asyncio.Future[bytes | None]]]) -> None:
        assert self._client is not None
        try:
            values = await self._client.mget(list(batch))
        except Exception as exc:  # noqa: BLE001 - a reader that dies would leave every later get waiting
            self._failed(exc)
            values = [None] * len(batch)
        else:
            self._counts["read_batches"] += 1
            self._counts["read_keys"] += len(batch)
            for waiters, value in zip(batch.values(), values):
                self._counts["hits" if value is not None else "misses"] += len(waiters)
        for waiters, value in zip(batch.values(), values):
            for future in waiters:
                if not future.done():  # the caller may have given up
                    future.set_result(value)

    # writes

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Queue ``SET key value PX ttl``; returns at once. Nothing is stored for a TTL under 1 ms."""
        ttl_ms = int(ttl_s * 1000)
        if ttl_ms < 1:
            return
        if self._down_reason is not None:
            self._counts["dropped_failed"] += 1
            return
        if len(self._writes) == self._writes.maxlen:
            self._counts["dropped_full"] += 1  # the deque pushes the oldest out
        self._writes.append((key, value, ttl_ms))
        self._write_wakeup.set()

    async def flush(self) -> None:
        """Wait until every write queued so far is written or dropped."""
        if self._writer is None or self._writer.done():
            return
        self._drained.clear()
        self._write_wakeup.set()
        await self._drained.wait()

    async def _write_loop(self) -> None:
        assert self._client is not None
        while True:
            await self._write_wakeup.wait()
            self._write_wakeup.clear()
            while self._writes and self._down_reason is None:
                async with self._write_lock:
                    batch = [self._writes.popleft() for _ in range(min(self.batch_max, len(self._writes)))]
                    pipe = self._client.pipeline(transaction=False)
                    for key, value, ttl_ms in batch:
                        pipe.set(key, value, px=ttl_ms)
                    try:
                        results = await pipe.execute(raise_on_error=False)
                    except Exception as exc:  # noqa: BLE001 - a writer that dies would queue writes for ever
                        self._failed(exc)
                        self._counts["dropped_failed"] += len(batch)
                        continue
                    refused = [result for result in results if isinstance(result, Exception)]
                    if refused:  # e.g. OOM under maxmemory: Redis is there but will not take these
                        self._failed(refused[0])
                        self._counts["dropped_failed"] += len(refused)
                    self._counts["write_batches"] += 1
                    self._counts["writes"] += len(batch) - len(refused)
            self._drained.set()

    # invalidation

    async def delete(self, keys: Iterable[str]) -> int | None:
        """Remove ``keys``: how many Redis had, or None if that failed.

        When Redis cannot be reached the deletion is kept and replayed before
        the cache is used again; a command Redis refuses is counted and logged.
        """
        doomed = list(keys)
        wanted = set(doomed)
        await self._discard_queued(lambda key: key in wanted)
        return await self._invalidate("keys", doomed)

    async def clear(self, prefix: str) -> int | None:
        """Remove every key starting with ``prefix`` (SCAN + UNLINK): how many, or None as for :meth:`delete`."""
        if not prefix:
            raise ValueError("clear needs a key prefix; an empty one would empty the whole Redis database")
        await self._discard_queued(lambda key: key.startswith(prefix))
        return await self._invalidate("prefix", prefix)

    async def _discard_queued(self, matches: Callable[[str], bool]) -> None:
        async with self._write_lock:  # a batch on the wire lands first, so the UNLINK comes after it
            kept = [write for write in self._writes if not matches(write[0])]
            self._writes.clear()
            self._writes.extend(kept)

    async def _invalidate(self, kind: str, what: str | list[str]) -> int | None:
        if self._down_reason is None:
            try:
                return await self._apply(kind, what)
            except Exception as exc:  # noqa: BLE001 - counted; an outage shows in status and replays it later
                self._failed(exc)
            if self._down_reason is None:
                return None  # refused by a Redis that is up: logged by _failed, nothing to replay
        if len(self._invalidations) == self._invalidations.maxlen:
            self._counts["lost_invalidations"] += 1
        self._invalidations.append((kind, what))
        return None

    async def _apply(self, kind: str, what: str | list[str]) -> int:
        assert self._client is not None
        if kind == "keys":
            keys = list(what)
            chunks = [keys[i:i + self.batch_max] for i in range(0, len(keys), self.batch_max)]
        else:
            chunks, chunk = [], []
            async for key in self._client.scan_iter(match=_glob_escape(str(what)) + "*", count=_SCAN_COUNT):
                chunk.append(key)
                if len(chunk) == self.batch_max:
                    chunks.append(chunk)
                    chunk = []
            chunks.append(chunk)
        removed = 0
        for chunk in chunks:
            if chunk:
                removed += await self._client.unlink(*chunk)
        return removed

    # down and up

    def _failed(self, exc: BaseException) -> None:
        self._counts["errors"] += 1
        if isinstance(exc, _UNREACHABLE):
            self._mark_down(exc)
        else:
            log.warning("l2_error", error=f"{type(exc).__name__}: {exc}")

    def _mark_down(self, exc: BaseException) -> None:
        if self._probe is not None or self._down_reason == "stopped":
            return  # already down and probing, or stopped on purpose
        self._down_reason = _reason(exc)
        log.warning("l2_down", reason=self._down_reason, retry_s=self.retry_s)
        self._counts["dropped_failed"] += len(self._writes)
        self._writes.clear()
        self._drained.set()
        self._answer_pending_with_none()
        self._probe = asyncio.create_task(self._probe_until_up(), name="l2-probe")

    async def _probe_until_up(self) -> None:
        assert self._client is not None
        while True:
            await asyncio.sleep(self.retry_s)
            try:
                await self._client.connection_pool.disconnect()  # no connection from before the outage is reused
                await self._client.ping()
                while self._invalidations:
                    await self._apply(*self._invalidations[0])
                    self._invalidations.popleft()
            except (RedisError, *_UNREACHABLE) as exc:
                self._down_reason = _reason(exc)
                continue
            self._down_reason, self._probe = None, None
            log.info("l2_up")
            return

    def _answer_pending_with_none(self) -> None:
        pending, self._pending = self._pending, {}
        for waiters in pending.values():
            for future in waiters:
                if not future.done():
                    future.set_result(None)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)
