"""Benchmark what one cache lookup costs in process, level by level (issue 8: L1 <= 20 us, L2 <= 0.3 ms).

Every lookup is timed on its own (``time.perf_counter_ns`` around the call; the timer's own cost, measured
first, is printed and not subtracted) and the table gives the median and p99 per lookup in microseconds:

* ``key``: :func:`llmrouter.cache.keys.cache_key` of a request with a 1 kB prompt (normalise + SHA-256);
* ``decode``: :meth:`CachedAnswer.from_bytes` of a 1 kB answer stored compressed (what every hit pays);
* ``L1 hit`` / ``L1 miss``: :meth:`L1Cache.get` on a cache holding 10,000 such answers;
* ``L2 get``: :meth:`RedisCache.get`, one at a time (each one MGET), on the Redis of ``--redis-url``;
* ``L2 get x64``: 64 concurrent gets (one MGET), the batch's time divided by 64; ``L2 batch of 64`` is the
  batch's own time, what each of the 64 callers waited;
* ``redis-py GET``: a bare ``redis.asyncio`` GET, for comparison with the batched path;
* ``L3 get``: ``rocksdict.Rdict.get`` (raw mode, as faust opens it) on 10,000 answers flushed to an SST file
  in a temporary directory: the store alone, without faust's table layer.

Values are a 1 kB answer of English-like words, compressed as ``cache_config.compression`` does.
L2 keys live under a unique ``bench:<uuid>:`` prefix on the shared Redis and are removed at the end
(SCAN + UNLINK of that prefix only; nothing else is touched).

Usage::

    .venv/bin/python bench/cache_levels.py                    # needs Redis on 127.0.0.1:6379
    .venv/bin/python bench/cache_levels.py --lookups 5000 --redis-url redis://127.0.0.1:6380/0

Writes ``bench/results/cache_levels.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import redis
import redis.asyncio
import rocksdict

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.keys import cache_key
from llmrouter.cache.l1 import L1Cache
from llmrouter.cache.l2 import RedisCache
from llmrouter.cache.normalise import Templates
from llmrouter.wire.contract import Request

RESULTS = Path(__file__).parent / "results" / "cache_levels.json"
ENTRIES = 10_000
AIMS_US = {"L1 hit": 20.0, "L2 get": 300.0}
_WORDS = ("the a of to and in is that for it as with was on be by this are or from at which an not have "
          "kafka broker partition offset consumer producer topic record stream table cache answer model "
          "request result latency batch worker provider token prompt replica leader commit log segment").split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lookups", type=int, default=20_000, help="timed lookups per row (L2 rows: a quarter)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = random.Random(8)
    answer = _answer(rng)
    value = answer.to_bytes(compress=True)
    print(f"value: {len(answer.text.encode())} B of text, {len(value)} B stored (compressed); "
          f"timer overhead {_timer_overhead_ns():.0f} ns per reading", flush=True)

    rows: dict[str, list[float]] = {}
    rows["key"] = _time_sync(lambda r: cache_key(r, version=1, templates=Templates(), shared_namespace=False),
                             [_request(rng, i) for i in range(min(args.lookups, 5_000))])
    rows["decode"] = _time_sync(CachedAnswer.from_bytes, [value] * args.lookups)
    rows.update(_l1_rows(value, args.lookups, rng))
    rows.update(asyncio.run(_l2_rows(args.redis_url, value, max(args.lookups // 4, 640), rng)))
    rows["L3 get"] = _l3_row(value, args.lookups, rng)

    table = {name: _summary(samples) for name, samples in rows.items()}
    _print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "redis_url": args.redis_url, "value_bytes": len(value), "text_bytes": len(answer.text.encode()),
        "aims_us": AIMS_US, "rows_us": table}, indent=2))
    print(f"wrote {args.out}")
    return 0


def _l1_rows(value: bytes, lookups: int, rng: random.Random) -> dict[str, list[float]]:
    print("L1 ...", flush=True)
    cache = L1Cache(1 << 30)
    keys = [f"llm:v1:u.user{i % 100}:{rng.getrandbits(256):064x}" for i in range(ENTRIES)]
    for key in keys:
        cache.put(key, value, expires_at_ms=(time.time_ns() // 1_000_000) + 3_600_000)
    hits = [rng.choice(keys) for _ in range(lookups)]
    misses = [f"llm:v1:anon:{rng.getrandbits(256):064x}" for _ in range(lookups)]
    hit_times = _time_sync(cache.get, hits)
    assert all(cache.get(key) == value for key in hits[:100])
    return {"L1 hit": hit_times, "L1 miss": _time_sync(cache.get, misses)}


async def _l2_rows(url: str, value: bytes, lookups: int, rng: random.Random) -> dict[str, list[float]]:
    print(f"L2 ({url}) ...", flush=True)
    prefix = f"bench:{uuid.uuid4().hex}:"
    keys = [f"{prefix}{i}" for i in range(ENTRIES)]
    cache = RedisCache(url)
    await cache.start()
    if not cache.available:
        raise SystemExit(f"Redis at {url} does not answer ({cache.status()}); start it with `llmrouter infra up`")
    bare = redis.asyncio.Redis.from_url(url)
    try:
        for key in keys:
            cache.put(key, value, ttl_s=600)
        await cache.flush()
        singles = [rng.choice(keys) for _ in range(lookups)]
        rows = {"L2 get": await _time_async(cache.get, singles)}
        batches = [[rng.choice(keys) for _ in range(64)] for _ in range(max(lookups // 64, 10))]
        batch_times = await _time_async(lambda batch: asyncio.gather(*(cache.get(key) for key in batch)), batches)
        rows["L2 get x64"] = [t / 64 for t in batch_times]
        rows["L2 batch of 64"] = batch_times
        rows["redis-py GET"] = await _time_async(bare.get, singles)
        assert await cache.get(keys[0]) == value
        stats = cache.stats()
        print(f"  {stats.read_batches} MGETs, mean batch {stats.mean_read_batch:.1f} keys", flush=True)
        return rows
    finally:
        removed = await cache.clear(prefix)
        print(f"  removed {removed} bench keys under {prefix}", flush=True)
        await bare.aclose()
        await cache.stop()


def _l3_row(value: bytes, lookups: int, rng: random.Random) -> list[float]:
    print("L3 ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-l3-") as directory:
        db = rocksdict.Rdict(directory, options=rocksdict.Options(raw_mode=True))
        try:
            keys = [f"llm:v1:anon:{rng.getrandbits(256):064x}".encode() for _ in range(ENTRIES)]
            for key in keys:
                db[key] = value
            db.flush()
            wanted = [rng.choice(keys) for _ in range(lookups)]
            times = _time_sync(db.get, wanted)
            assert db.get(wanted[0]) == value
            return times
        finally:
            db.close()


def _time_sync(call: Callable[[object], object], inputs: list) -> list[float]:
    """Microseconds per call, each call timed alone."""
    clock = time.perf_counter_ns
    out = []
    for item in inputs:
        started = clock()
        call(item)
        out.append((clock() - started) / 1000)
    return out


async def _time_async(call: Callable[[object], Awaitable[object]], inputs: list) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for item in inputs:
        started = clock()
        await call(item)
        out.append((clock() - started) / 1000)
    return out


def _timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    readings = []
    for _ in range(10_000):
        started = clock()
        readings.append(clock() - started)
    return float(np.median(readings))


def _summary(samples: list[float]) -> dict[str, float]:
    array = np.asarray(samples)
    return {"n": int(array.size), "median": round(float(np.median(array)), 2),
            "p99": round(float(np.percentile(array, 99)), 2), "mean": round(float(array.mean()), 2)}


def _print(table: dict[str, dict[str, float]]) -> None:
    print(f"\n{'lookup':<16}{'n':>8}{'median us':>12}{'p99 us':>12}{'mean us':>12}  aim")
    for name, row in table.items():
        aim = AIMS_US.get(name)
        verdict = "" if aim is None else f"<= {aim:g} us: {'met' if row['median'] <= aim else 'NOT met'}"
        print(f"{name:<16}{row['n']:>8}{row['median']:>12.2f}{row['p99']:>12.2f}{row['mean']:>12.2f}  {verdict}")


def _answer(rng: random.Random) -> CachedAnswer:
    zipf = [1 / rank for rank in range(1, len(_WORDS) + 1)]  # word frequencies as in English text
    text = " ".join(rng.choices(_WORDS, weights=zipf, k=300))[:1024]
    now_ms = time.time_ns() // 1_000_000
    return CachedAnswer(text=text, provider="together", model="meta-llama/Llama-3-8b-chat-hf", finish_reason="stop",
                        prompt_tokens=240, completion_tokens=230, cost_usd=0.094, stored_at_ms=now_ms,
                        expires_at_ms=now_ms + 3_600_000)


def _request(rng: random.Random, i: int) -> Request:
    prompt = " ".join(rng.choice(_WORDS) for _ in range(200))[:1024]
    return Request(request_id=f"r-{i}", prompt=prompt, user_id=f"user{i % 100}")


if __name__ == "__main__":
    sys.exit(main())
