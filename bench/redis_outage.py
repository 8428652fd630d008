"""Benchmark: Redis killed and restarted while `llmrouter loadtest` runs; nothing may fail or be lost.

A redis-server of its own (a free port, no persistence), the provider simulator answering at once and one
worker (topics of its own) whose L2 is that Redis. The load test runs as a child process, open loop at
``--rate`` for ``--duration`` seconds, ``--repeat-share`` of the requests reusing prompts from a pool (cache
hits) and the rest new (provider calls, each answer stored in every level). At ``--kill-at`` seconds the Redis
server is SIGKILLed; at ``--restart-at`` a new one starts on the same port (empty: what a restart without
persistence gives). Meanwhile ``/health/`` is read every 0.5 s, and what it said about Redis is kept.

It prints the load test's report, the health timeline (when the worker said degraded, when it said ok again)
and the hits per level before, during and after the outage (from ``/metrics/``), and writes
``bench/results/redis_outage.json``. Exits 1 if any request was lost, duplicated or answered with an error,
or if the worker never said degraded while Redis was down, or never took Redis back.

Usage::

    .venv/bin/python bench/redis_outage.py                      # 200 req/s for 40 s, Redis down from 10 s to 25 s
    .venv/bin/python bench/redis_outage.py --rate 500 --duration 60 --kill-at 15 --restart-at 40

Needs Kafka (``.venv/bin/llmrouter infra up``) and ``redis-server`` on the PATH.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import clean_up, free_port, start_worker, worker_settings
from hot_path import SIM_PROVIDER
from llmrouter.infra.redis import ScratchRedis
from llmrouter.simulator.process import SimulatorProcess
from llmrouter.testing.worker_process import WorkerProcess

RESULTS = Path(__file__).parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--kill-at", type=float, default=10.0, help="seconds into the load")
    parser.add_argument("--restart-at", type=float, default=25.0, help="seconds into the load")
    parser.add_argument("--repeat-share", type=float, default=0.8)
    parser.add_argument("--pool-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "redis_outage.json")
    args = parser.parse_args()
    if not 0 < args.kill_at < args.restart_at < args.duration:
        parser.error("want 0 < --kill-at < --restart-at < --duration")
    return args


def hits(worker: WorkerProcess) -> dict[str, float]:
    return {level: worker.metric("llmrouter_cache_hits_total", level=level) for level in ("l1", "l2", "l3")}


def watch_health(worker: WorkerProcess, started: float, stop: threading.Event, timeline: list[dict[str, Any]]) -> None:
    """Every change of what /health/ says about Redis (the L2 status and the degraded list), with its time."""
    last = None
    while not stop.wait(0.5):
        try:
            health = worker.health()
        except OSError as exc:
            said = {"l2": f"/health/ unreachable: {exc}", "degraded": None}
        else:
            said = {"l2": health["cache"]["l2"], "degraded": bool(health["degraded"])}
        if said != last:
            timeline.append({"at_s": round(time.monotonic() - started, 2), **said})
            last = said


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="llmrouter-bench-redis-outage-"))
    own = ScratchRedis(directory, free_port())
    sim = worker = settings = None
    timeline: list[dict[str, Any]] = []
    phases: dict[str, dict[str, float]] = {}
    try:
        own.start()
        sim = SimulatorProcess(log_path=directory / "simulator.log",
                               args=["--latency-ms", "0", "--token-delay-ms", "0"]).start()
        settings, path = worker_settings(directory, local_config={"enabled": False}, redis={"url": own.url},
                                         providers={"sim": {**SIM_PROVIDER, "endpoint": sim.base_urls()["openai"]}},
                                         fallback_chain=["sim"])
        print(f"starting a worker (log {directory / 'worker.log'}), Redis on port {own.port}...", flush=True)
        worker = start_worker(settings, path, directory)
        report_path = directory / "report.json"
        flags = ["--rate", f"{args.rate:g}", "--duration", f"{args.duration:g}", "--repeat-share",
                 f"{args.repeat_share:g}", "--pool-size", str(args.pool_size), "--worker-pid", str(worker.pid),
                 "--drain-s", "30", "--json", str(report_path), "--plot", str(args.out.with_suffix(".png"))]
        print(f"$ llmrouter --settings <the worker's> loadtest {' '.join(flags)}", flush=True)
        load = subprocess.Popen([sys.executable, "-m", "llmrouter", "--settings", str(path), "loadtest", *flags])
        started = time.monotonic()
        stop = threading.Event()
        watcher = threading.Thread(target=watch_health, args=(worker, started, stop, timeline), daemon=True)
        watcher.start()
        before = hits(worker)
        time.sleep(args.kill_at)  # the schedule of the experiment itself, not a wait for a condition
        phases["before"] = {k: v - before[k] for k, v in hits(worker).items()}
        at_kill = hits(worker)
        own.kill()
        print(f"\n[{time.monotonic() - started:5.1f} s] Redis killed", flush=True)
        time.sleep(args.restart_at - args.kill_at)
        phases["down"] = {k: v - at_kill[k] for k, v in hits(worker).items()}
        at_restart = hits(worker)
        own.start()
        print(f"\n[{time.monotonic() - started:5.1f} s] Redis started again (empty)", flush=True)
        if load.wait() != 0:
            raise RuntimeError(f"the load test exited with {load.returncode}")
        phases["after"] = {k: v - at_restart[k] for k, v in hits(worker).items()}
        stop.set()
        watcher.join()
        report = json.loads(report_path.read_text())
    finally:
        clean_up(worker=worker, sim=sim)
        own.kill()
        clean_up(settings=settings, directory=directory)
    router = report["router"]
    down = [t for t in timeline if args.kill_at <= t["at_s"] and t["degraded"]]
    back = [t for t in timeline if t["at_s"] >= args.restart_at and t["degraded"] is False and t["l2"] == "ok"]
    print(f"\nRedis down from {args.kill_at:g} s to {args.restart_at:g} s of {args.duration:g} s at {args.rate:g} req/s")
    print("health timeline (what /health/ said about Redis):")
    for t in timeline:
        print(f"  {t['at_s']:6.2f} s  degraded={t['degraded']}  l2={t['l2']}")
    print("cache hits per level:")
    for phase, counts in phases.items():
        print(f"  {phase:7s} " + "  ".join(f"{level} {int(n)}" for level, n in counts.items()))
    print(f"sent {router['sent']}, answered {router['answered']}, lost {router['lost']}, duplicates "
          f"{router['duplicates']}, errors {router['errors'] or 0}; latency p50 {router['latency']['p50_ms']:.1f} ms, "
          f"p99 {router['latency']['p99_ms']:.1f} ms, max {router['latency']['max_ms']:.1f} ms")
    problems = list(report["problems"])
    if not down:
        problems.append("the worker never said degraded while Redis was down")
    if not back:
        problems.append("the worker never said Redis was ok again after it restarted")
    args.out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                    "timeline": timeline, "hits": phases, "report": report,
                                    "problems": problems}, indent=2) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    if problems:
        print("FAILED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
