"""LiteLLM's Router in process, and the bare `openai` client, in front of an OpenAI-compatible endpoint:
requests per second and CPU per request of this process (closed loop at ``--concurrency``).

Run with an interpreter that has LiteLLM installed (it brings `openai`); the router's own environment
does not need it. ``bench/hot_path.py --litellm-python PATH`` runs it against the same provider
simulator as the worker, in the same run, and puts its rows beside the worker's::

    python3.11 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install litellm
    /tmp/litellm-venv/bin/python bench/litellm_router.py --api-base http://127.0.0.1:PORT/v1 --count 2000

Prints one JSON object: for each of ``openai`` (AsyncOpenAI's chat.completions.create, the floor any
Python router on this client stands on) and ``litellm`` (Router.acompletion over one deployment), the
count, wall time, requests/s, CPU ms per request and latency p50/p95/p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-base", required=True, help="the endpoint's base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="sim-model")
    parser.add_argument("--count", type=int, default=2000, help="requests per client (after a warm-up of 100)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    return parser.parse_args()


async def closed_loop(call: Callable[[int], Awaitable[object]], count: int, concurrency: int) -> dict[str, float]:
    """``count`` calls, ``concurrency`` at a time: wall time, CPU of this process and each call's latency."""
    latencies: list[float] = []
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index, next_index = next_index, next_index + 1
            started = time.perf_counter()
            await call(index)
            latencies.append((time.perf_counter() - started) * 1000.0)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cuts = statistics.quantiles(latencies, n=100)
    return {"count": count, "wall_s": wall, "rps": count / wall, "cpu_ms_per_request": cpu * 1000.0 / count,
            "p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}


async def main() -> int:
    args = parse_args()
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm
    from openai import AsyncOpenAI

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    client = AsyncOpenAI(base_url=args.api_base, api_key="sk-sim", max_retries=0)
    router = litellm.Router(model_list=[{"model_name": "sim", "litellm_params": {
        "model": f"openai/{args.model}", "api_base": args.api_base, "api_key": "sk-sim"}}], num_retries=0)

    def messages(i: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Summarise request number {i} in one line."}]

    async def bare(i: int) -> object:
        return await client.chat.completions.create(model=args.model, messages=messages(i), max_tokens=args.max_tokens)

    async def routed(i: int) -> object:
        return await router.acompletion(model="sim", messages=messages(i), max_tokens=args.max_tokens)

    results = {}
    for name, call in (("openai", bare), ("litellm", routed)):
        await closed_loop(call, 100, min(args.concurrency, 100))  # warm-up: connections, imports, caches
        results[name] = await closed_loop(call, args.count, args.concurrency)
        print(f"{name}: {results[name]['rps']:.0f} req/s, {results[name]['cpu_ms_per_request']:.2f} ms CPU per request",
              file=sys.stderr, flush=True)
    results["versions"] = {"litellm": _version("litellm"), "openai": _version("openai"), "python": sys.version.split()[0]}
    print(json.dumps(results))
    return 0


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
