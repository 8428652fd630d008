"""What the windowed aggregations (F025) cost the hot path: the same load with ``windows.enabled`` off and on.

One provider simulator (a child process) answering at once, so the provider is never the limit; then, for each
setting in turn (off first, then on; ``--rounds 2`` alternates off, on, off, on to even out a machine whose
load drifts), a fresh worker (a child process, topics of its own) and, as a user would run them::

    llmrouter --settings <the worker's> loadtest --rate R --duration D --worker-pid <worker> --json ...
    llmrouter --settings <the worker's> loadtest --concurrency N --duration D --worker-pid <worker> --json ...

the open loop at ``--rate`` (the worker's CPU per answered request at a load it holds) and the closed loop at
``--concurrency`` (its requests per second at saturation). With windows on, every result and every provider call
is counted in memory and each worker sends one batch per subject per second to ``llm.router.outcomes``; its
owner agent (the same worker here) adds them to the windows table and judges the alert rules every 5 s.

Prints one table (setting, run, answered req/s, p50/p95 ms, worker CPU ms per request, lost/dup/errors) and the
change from off to on; writes ``bench/results/aggregation_cost.json``.

Usage::

    .venv/bin/python bench/aggregation_cost.py                      # 100 req/s and 64 outstanding, 15 s each
    .venv/bin/python bench/aggregation_cost.py --duration 10 --rounds 2   # off, on, off, on

Needs Kafka and Redis (``.venv/bin/llmrouter infra up``) and matplotlib (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import clean_up, start_worker, worker_settings
from hot_path import SIM_PROVIDER, loadtest_command
from llmrouter.core.windows import Batch, Deltas
from llmrouter.simulator.process import SimulatorProcess

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="open loop: requests per second")
    parser.add_argument("--concurrency", type=int, default=64, help="closed loop: requests outstanding (0: skip)")
    parser.add_argument("--max-in-flight", type=int, default=64, help="worker.max_in_flight (as the provider path "
                        "benchmark in BENCHMARKS.md)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per run")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="seconds at 50 req/s first, not counted")
    parser.add_argument("--rounds", type=int, default=1, help="off then on, this many times")
    parser.add_argument("--out", type=Path, default=RESULTS / "aggregation_cost.json")
    return parser.parse_args(argv)


def measure(sim: SimulatorProcess, windows_on: bool, args: argparse.Namespace, directory: Path) -> list[dict]:
    """A worker with windows on or off, the warm-up, the open and the closed loop; their rows."""
    directory.mkdir()
    settings, path = worker_settings(directory, local_config={"enabled": False},
                                     providers={"sim": {**SIM_PROVIDER, "endpoint": sim.base_urls()["openai"]}},
                                     fallback_chain=["sim"], windows={"enabled": windows_on},
                                     worker={"max_in_flight": args.max_in_flight})
    worker = start_worker(settings, path, directory)
    rows = []
    try:
        subprocess.run(loadtest_command(path, ["--rate", "50", "--duration", f"{args.warmup_s:g}"]), check=True,
                       stdout=subprocess.DEVNULL)
        runs = [("rate", f"{args.rate:g}")] + ([("concurrency", str(args.concurrency))] if args.concurrency else [])
        for how, value in runs:
            out = directory / f"{how}-{value}.json"
            flags = [f"--{how}", value, "--duration", f"{args.duration:g}", "--worker-pid", str(worker.pid),
                     "--json", str(out)]
            print(f"\n[windows {'on' if windows_on else 'off'}] $ llmrouter --settings <the worker's> loadtest "
                  f"{shlex.join(flags)}", flush=True)
            subprocess.run(loadtest_command(path, flags), check=True, stdout=subprocess.DEVNULL)
            report = json.loads(out.read_text())
            router, cpu = report["router"], report["cpu"]
            latency = router.get("latency") or {}
            rows.append({"windows": windows_on, "run": f"{how} {value}", "answered_rps": router["answered_rps"],
                         "p50_ms": latency.get("p50_ms"), "p95_ms": latency.get("p95_ms"),
                         "worker_cpu_ms": cpu["worker_ms_per_request"], "lost": router["lost"],
                         "duplicates": router["duplicates"], "errors": sum(router["errors"].values())})
        if windows_on:
            status, view = worker.get_json("/windows/?subject=all&limit=1")
            rows[-1]["windows_view_ok"] = status == 200 and "all" in view["subjects"]
    finally:
        clean_up(worker=worker, settings=settings)
    return rows


def hook_cost_us(requests: int = 50_000) -> dict[str, float]:
    """The hot path's share in process, free of the machine's noise: microseconds per request to count one result
    and two provider calls (what the answer stage adds with windows on), and to encode its batches at a flush."""
    deltas = Deltas(60_000)
    started = time.perf_counter()
    for i in range(requests):
        at_ms = 1_764_500_000_000 + i
        deltas.result(priority="normal", status="ok", route="cloud", latency_ms=40.0 + i % 500, prompt_tokens=12,
                      completion_tokens=8, cost_usd=0.0001, at_ms=at_ms)
        deltas.call(provider="a", outcome="error", latency_ms=9.0, at_ms=at_ms)
        deltas.call(provider="b", outcome="ok", latency_ms=30.0, at_ms=at_ms)
    counted = time.perf_counter() - started
    started = time.perf_counter()
    flushes = 200
    for seq in range(flushes):
        deltas.result(priority="normal", status="ok", route="cloud", latency_ms=40.0, prompt_tokens=1,
                      completion_tokens=1, cost_usd=0.0, at_ms=1_764_500_000_000)
        for subject, windows in deltas.drain().items():
            Batch("bench", seq, windows).to_bytes()
    encoded = time.perf_counter() - started
    return {"count_us_per_request": counted / requests * 1e6, "encode_us_per_flush": encoded / flushes * 1e6}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| windows | run | answered req/s | p50 / p95 ms | worker CPU ms/req | lost / dup / errors |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {'on' if r['windows'] else 'off'} | {r['run']} | {r['answered_rps']:.1f} | "
                     f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} | {r['worker_cpu_ms']:.3f} | "
                     f"{r['lost']} / {r['duplicates']} / {r['errors']} |")
    return "\n".join(lines)


def change(rows: list[dict[str, Any]]) -> str:
    """Mean of each run's figures on against off, as a relative change."""
    out = []
    for run in dict.fromkeys(r["run"] for r in rows):
        def mean(on: bool, key: str) -> float:
            values = [r[key] for r in rows if r["run"] == run and r["windows"] is on]
            return sum(values) / len(values)
        for key, name in (("answered_rps", "req/s"), ("worker_cpu_ms", "CPU ms/req")):
            off, on = mean(False, key), mean(True, key)
            out.append(f"{run}: {name} {off:.3f} off -> {on:.3f} on ({(on - off) / off * 100:+.1f} %)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="llmrouter-bench-aggregation-"))
    started, rows = time.monotonic(), []
    sim = SimulatorProcess(log_path=directory / "simulator.log", args=["--latency-ms", "0", "--token-delay-ms", "0"])
    try:
        sim.start()
        for i in range(args.rounds):
            for windows_on in (False, True):
                rows += measure(sim, windows_on, args, directory / f"{i}-{'on' if windows_on else 'off'}")
    except KeyboardInterrupt:
        return 130
    finally:
        clean_up(sim=sim, directory=directory)
    print(f"\none worker, simulated provider answering at once, {args.duration:g} s per run, "
          f"{time.monotonic() - started:.0f} s in all\n")
    print(table(rows))
    print("\n" + change(rows))
    micro = hook_cost_us()
    print(f"\nin process: {micro['count_us_per_request']:.2f} us per request to count a result and two calls; "
          f"{micro['encode_us_per_flush']:.0f} us to encode one flush's batches")
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "in_process": micro}, indent=2))
    print(f"\nwrote {args.out}")
    return 1 if any(r["lost"] or r["duplicates"] or r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
