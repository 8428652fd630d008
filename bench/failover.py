"""Benchmark failover: how the router serves, through Kafka end to end, while a cloud provider misbehaves.

Two provider simulators (never a real cloud) stand in for ``huggingface`` (Hugging Face format, first in the
chain) and ``together`` (OpenAI format); the local model is disabled and premium providers are unconfigured;
retry settings are the defaults. A worker runs in a child process with topics, app id, web port and data dir
of its own. Each phase sends ``--requests`` requests, keeping ``--concurrency`` outstanding, and reads the
results back from Kafka:

* ``healthy``: both simulators answer after 40 ms (lognormal, sigma 0.3);
* ``flaky``: huggingface fails 30 % of calls (500 / 503 / 429; retry_after_s 0.2, which a 429's
  ``Retry-After`` header rounds up to 1 s);
* ``down``: huggingface answers every call with a 500, so each request retries it, then fails over to together;
* ``burst``: huggingface answers 429 for 1 s in every 2 s (Retry-After up to 1 s);
* ``recovery``: an open-loop load of ``--recovery-rate`` req/s while huggingface is healthy, then down (every
  call a 500) long enough for its breaker to open and its first probes to fail, then healthy again until the
  ramp after closing is over (``failover_recovery.py``). It runs on a worker of its own, so that its breaker
  starts closed, with the breaker's cool-down and ramp shortened to ``--recovery-cooldown-s`` (2) and
  ``--recovery-ramp-s`` (10) so the phase takes about 25 s (the defaults, 5 and 20, take about 45 s).

Per phase (after 8 warm-up requests that are not counted): ok/total, end-to-end latency p50/p95/p99 (the
results' ``total_latency_ms``) and the p50 of ``queue_latency_ms`` (time before the router dispatched a
request), which provider answered, provider calls per request (skipped chain entries not counted), HTTP
requests and new TCP connections each simulator saw (connections already open stay uncounted), requests/s.
The recovery phase reports instead: time from the outage to the breaker's opening, calls per request and
added latency once open, failed huggingface calls before, during and after, and the ramp back, per second;
it writes them under ``recovery`` in the JSON and plots them in ``failover_recovery.png``. Exits 1 if any
request was not answered ok.

Usage::

    .venv/bin/python bench/failover.py                         # all phases, 200 requests each, 16 outstanding
    .venv/bin/python bench/failover.py --requests 50 --phases healthy,down --keep
    .venv/bin/python bench/failover.py --phases recovery                  # about 35 s with the worker's start

Needs Kafka and Redis (``.venv/bin/llmrouter infra up``). Writes ``bench/results/failover.json``, ``.png``
and ``failover_recovery.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import failover_recovery as recovery
from harness import clean_up, start_worker, worker_settings
from llmrouter.wire.client import RouterClient
from llmrouter.config.settings import Settings
from llmrouter.simulator import SimProfile, Simulator

RESULTS = Path(__file__).parent / "results" / "failover.json"
API_KEY = f"sk-sim-{uuid.uuid4().hex}"
PROVIDERS = {"huggingface": "huggingface", "together": "openai"}  # provider -> simulator flavor
BASE_PROFILE: dict[str, Any] = {"latency_ms": 40, "latency_sigma": 0.3, "token_delay_ms": 0, "error_rate": 0.0,
                                "fault_weights": {"server_error": 1, "overloaded": 1, "rate_limited": 1},
                                "retry_after_s": 1.0, "burst_every_s": 0, "burst_length_s": 0, "api_key": API_KEY}
PHASES: dict[str, dict[str, Any]] = {  # what the huggingface simulator does in each phase; together stays healthy
    "healthy": {},
    "flaky": {"error_rate": 0.3, "retry_after_s": 0.2},
    "down": {"error_rate": 1.0, "fault_weights": {"server_error": 1}},
    "burst": {"burst_every_s": 2, "burst_length_s": 1, "retry_after_s": 1},
}
PHASE_NAMES = [*PHASES, "recovery"]
WARMUP_REQUESTS = 8
T = TypeVar("T")


@dataclass(frozen=True)
class PhaseResult:
    """What one phase measured."""

    phase: str
    ok: int
    total: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    queue_p50_ms: float  # median time a request waited before the router dispatched it
    answered_by: dict[str, int]
    calls_mean: float
    calls_max: int
    sim_requests: dict[str, int]
    sim_connections_opened: dict[str, int]
    sim_outcomes: dict[str, dict[str, int]]
    throughput_rps: float
    elapsed_s: float
    latencies_ms: list[float]


class SimulatorThread:
    """The simulators, served by an event loop in a thread of their own (the bench's loop never stalls them)."""

    def __init__(self, names: list[str]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulators", daemon=True)
        self._thread.start()
        self.sims = {name: Simulator(SimProfile(**BASE_PROFILE)) for name in names}
        for sim in self.sims.values():
            self.call(sim.start("127.0.0.1", 0))

    def call(self, what: Any) -> Any:
        """Run a coroutine, or a plain callable, on the simulators' loop and return its result."""
        async def plain() -> Any:
            return what()
        coro = what if asyncio.iscoroutine(what) else plain()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def stop(self) -> None:
        for sim in self.sims.values():
            self.call(sim.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: requests and concurrency per phase, which phases, keep the temp dir or not."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="requests outstanding at once")
    parser.add_argument("--phases", default=",".join(PHASE_NAMES), help=f"comma list of {', '.join(PHASE_NAMES)}")
    parser.add_argument("--recovery-rate", type=float, default=40.0, help="recovery: requests per second")
    parser.add_argument("--recovery-cooldown-s", type=float, default=2.0, help="recovery: the breaker's cooldown_s")
    parser.add_argument("--recovery-ramp-s", type=float, default=10.0, help="recovery: the breaker's ramp_s")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (settings, worker log, tables)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not args.phases:
        parser.error(f"no phase given; the phases are {', '.join(PHASE_NAMES)}")
    if unknown := [p for p in args.phases if p not in PHASE_NAMES]:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; the phases are {', '.join(PHASE_NAMES)}")
    return args


def write_settings(directory: Path, sims: SimulatorThread, **sections: dict[str, Any]) -> tuple[Settings, Path]:
    """Settings of a worker of its own whose Hugging Face and Together are the simulators, its topics created;
    ``sections`` (e.g. ``breaker``) merged over them."""
    urls = {p: sims.sims[p].base_urls()[flavor] for p, flavor in PROVIDERS.items()}
    return worker_settings(directory, local_config={"enabled": False},
                           huggingface_config={"endpoint": urls["huggingface"]},
                           together_config={"endpoint": urls["together"]},
                           fallback_chain=["local", "huggingface", "together", "premium"], **sections)


def on_worker(directory: Path, sims: SimulatorThread, run: Callable[[Settings], Awaitable[T]],
              **sections: dict[str, Any]) -> tuple[Settings, T]:
    """Run ``run`` against a worker of its own; stop the worker and delete its topics whatever happens."""
    directory.mkdir(parents=True)
    settings, path = write_settings(directory, sims, **sections)
    worker = None
    try:
        print(f"starting a worker (log {directory / 'worker.log'})...", flush=True)
        worker = start_worker(settings, path, directory, keys={"HF_TOKEN": API_KEY, "TOGETHER_API_KEY": API_KEY})
        return settings, asyncio.run(run(settings))
    finally:
        clean_up(worker=worker, settings=settings)


async def send_keeping(client: RouterClient, label: str, count: int, concurrency: int) -> tuple[list[dict], float]:
    """Send ``count`` requests, ``concurrency`` outstanding at a time; their results and the seconds taken."""
    outstanding: set[str] = set()
    sent, done, last_print = 0, [], time.monotonic()
    started = time.monotonic()
    while len(done) < count:
        while len(outstanding) < concurrency and sent < count:
            prompt = f"{label} request {sent} {uuid.uuid4().hex[:8]}: explain failover in a few words"
            outstanding.add(await client.send({"prompt": prompt, "max_tokens": 16}))
            sent += 1
        await client.poll(0.05)
        for rid in [rid for rid in outstanding if rid in client.collected.results]:
            outstanding.discard(rid)
            done.append(rid)
        if time.monotonic() - last_print >= 2.0 or len(done) == count:
            print(f"phase {label}: {len(done)}/{count} results", flush=True)
            last_print = time.monotonic()
        if time.monotonic() - started > 60 + count:
            raise TimeoutError(f"phase {label}: {count - len(done)} result(s) missing after "
                               f"{time.monotonic() - started:.0f}s")
    elapsed_s = time.monotonic() - started
    collected = await client.wait_for(done, timeout_s=1)
    return [collected.results[rid][0].record for rid in done], elapsed_s


async def run_phases(settings: Settings, sims: SimulatorThread, phases: list[str],
                     args: argparse.Namespace) -> list[PhaseResult]:
    """Warm up, then each phase: set the huggingface profile, reset the counters, send, summarize."""
    results = []
    async with RouterClient(settings) as client:
        await send_keeping(client, "warm-up", WARMUP_REQUESTS, args.concurrency)
        for phase in phases:
            sims.call(lambda: sims.sims["huggingface"].update_profile(BASE_PROFILE | PHASES[phase]))
            for sim in sims.sims.values():
                sims.call(sim.reset)
            records, elapsed_s = await send_keeping(client, phase, args.requests, args.concurrency)
            stats = {name: sims.call(sim.stats) for name, sim in sims.sims.items()}
            results.append(summarize(phase, records, elapsed_s, stats))
    return results


async def run_recovery(settings: Settings, sims: SimulatorThread, schedule: recovery.Schedule) -> recovery.Run:
    """The recovery phase, huggingface's profile switched and both simulators' counters read on their loop."""
    def snapshot() -> recovery.Snapshot:
        return time.time(), {name: sim.stats() for name, sim in sims.sims.items()}

    def switch_hf(profile: dict[str, Any]) -> recovery.Snapshot:
        sims.sims["huggingface"].update_profile(profile)
        return snapshot()

    return await recovery.run(settings, schedule, switch_hf=lambda p: sims.call(lambda: switch_hf(p)),
                              snapshot=lambda: sims.call(snapshot), down=BASE_PROFILE | PHASES["down"],
                              healthy=BASE_PROFILE)


def summarize(phase: str, records: list[dict], elapsed_s: float, stats: dict[str, dict]) -> PhaseResult:
    """Latency percentiles, providers, calls per request and the simulators' counters of one phase."""
    latencies = [float(r["total_latency_ms"]) for r in records]
    calls = [sum(1 for a in r["attempts"] if a["outcome"] != "skipped") for r in records]
    answered: dict[str, int] = {}
    for r in records:
        key = r.get("provider") if r["status"] == "ok" else f"{r['status']}:{r.get('error_code')}"
        answered[key or "none"] = answered.get(key or "none", 0) + 1
    p50, p95, p99 = (float(np.percentile(latencies, q)) for q in (50, 95, 99))
    return PhaseResult(
        phase=phase, ok=sum(r["status"] == "ok" for r in records), total=len(records), p50_ms=p50, p95_ms=p95,
        p99_ms=p99, queue_p50_ms=float(np.percentile([float(r["queue_latency_ms"]) for r in records], 50)),
        answered_by=answered, calls_mean=statistics.fmean(calls), calls_max=max(calls),
        sim_requests={p: stats[p]["requests"][PROVIDERS[p]] for p in PROVIDERS},
        sim_connections_opened={p: stats[p]["connections_opened"] for p in PROVIDERS},
        sim_outcomes={p: {k: v for k, v in stats[p]["outcomes"].items() if v} for p in PROVIDERS},
        throughput_rps=len(records) / elapsed_s, elapsed_s=elapsed_s, latencies_ms=latencies)


def table(rows: list[PhaseResult]) -> str:
    """The results as a Markdown table."""
    lines = ["| phase | ok | p50 ms | p95 ms | p99 ms | queue p50 ms | answered hf / together | calls/req mean (max) "
             "| sim requests hf / together | connections hf / together | req/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        others = {k: v for k, v in r.answered_by.items() if k not in PROVIDERS}
        lines.append(
            f"| {r.phase} | {r.ok}/{r.total} | {r.p50_ms:.0f} | {r.p95_ms:.0f} | {r.p99_ms:.0f} | {r.queue_p50_ms:.0f} | "
            f"{r.answered_by.get('huggingface', 0)} / {r.answered_by.get('together', 0)}"
            f"{' ' + str(others) if others else ''} | {r.calls_mean:.2f} ({r.calls_max}) | "
            f"{r.sim_requests['huggingface']} / {r.sim_requests['together']} | "
            f"{r.sim_connections_opened['huggingface']} / {r.sim_connections_opened['together']} | "
            f"{r.throughput_rps:.1f} |")
    return "\n".join(lines)


def plot(rows: list[PhaseResult], path: Path) -> Path:
    """A latency histogram per phase (p50 and p95 marked), then a stacked bar of who answered per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows) + 1, figsize=(3.6 * (len(rows) + 1), 3.4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        ax.hist(r.latencies_ms, bins=30, color="tab:blue", alpha=0.8)
        for value, style, label in ((r.p50_ms, "-", "p50"), (r.p95_ms, "--", "p95")):
            ax.axvline(value, color="tab:red", linestyle=style, label=f"{label} {value:.0f} ms")
        ax.set_title(f"{r.phase}: end-to-end latency")
        ax.set_xlabel("ms")
        ax.set_ylabel("requests")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    keys = sorted({k for r in rows for k in r.answered_by}, key=lambda k: (k not in PROVIDERS, k))
    bottom = np.zeros(len(rows))
    for key in keys:
        counts = np.array([r.answered_by.get(key, 0) for r in rows], dtype=float)
        ax.bar([r.phase for r in rows], counts, bottom=bottom, label=key)
        bottom += counts
    ax.set_title("answered by")
    ax.set_ylabel("requests")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Start simulators and a worker, run the phases, print and save the table; clean up whatever happens.

    The recovery phase gets a worker of its own, its breaker settings shortened and starting closed.
    """
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill runs the cleanup below, as Ctrl-C does
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="llmrouter-bench-failover-"))
    steady = [p for p in args.phases if p != "recovery"]
    breaker = {"cooldown_s": args.recovery_cooldown_s, "ramp_s": args.recovery_ramp_s}
    schedule = recovery.Schedule.for_breaker(args.recovery_rate, args.recovery_cooldown_s, args.recovery_ramp_s)
    sims: SimulatorThread | None = None
    rows: list[PhaseResult] = []
    settings: Settings | None = None
    recovered: tuple[Settings, recovery.Run] | None = None
    try:
        sims = SimulatorThread(list(PROVIDERS))
        if steady:
            settings, rows = on_worker(directory / "steady", sims,
                                       lambda s: run_phases(s, sims, steady, args))
        if "recovery" in args.phases:
            sims.call(lambda: sims.sims["huggingface"].update_profile(BASE_PROFILE))
            recovered = on_worker(directory / "recovery", sims, lambda s: run_recovery(s, sims, schedule),
                                  breaker=breaker)
    except KeyboardInterrupt:
        print("interrupted: stopping the worker and the simulators", flush=True)
        return 130
    finally:
        clean_up(sim=sims, directory=directory, keep=args.keep)
    runtime_s = time.monotonic() - started
    settings = settings or recovered[0]
    report: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runtime_s": runtime_s,
        "profiles": {"base": {k: v for k, v in BASE_PROFILE.items() if k != "api_key"}, "huggingface": PHASES},
        "router": {"max_in_flight": settings.worker.max_in_flight,
                   "max_concurrent": {p: settings.limits_for(p).max_concurrent for p in PROVIDERS},
                   "retry_attempts": settings.huggingface_config.retry_attempts},
        "phases": [asdict(r) for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    failed = [f"{r.phase} ({r.total - r.ok} not ok: {r.answered_by})" for r in rows if r.ok < r.total]
    if rows:
        print(f"\n{args.requests} requests per phase, {args.concurrency} outstanding; huggingface first, then "
              f"together; {runtime_s:.0f} s in all\n")
        print(table(rows))
    if recovered is not None:
        report["recovery"] = recovery_report(recovered, schedule, args)
        figures = report["recovery"]["figures"]
        print("\n" + recovery.summary(figures, schedule))
        if figures["ok"] < figures["requests"]:
            failed.append(f"recovery ({figures['requests'] - figures['ok']} not ok)")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    if rows:
        print(f"wrote {plot(rows, args.out.with_suffix('.png'))}")
    if recovered is not None:
        path = args.out.with_name(f"{args.out.stem}_recovery.png")
        print(f"wrote {recovery.plot(figures, schedule, report['recovery']['breaker'], path)}")
    if failed:
        print(f"\nFAILED: every request should be answered ok; not so in {', '.join(failed)}")
    return 1 if failed else 0


def recovery_report(recovered: tuple[Settings, recovery.Run], schedule: recovery.Schedule,
                    args: argparse.Namespace) -> dict[str, Any]:
    """The recovery phase's block of the JSON: its schedule, the breaker settings it ran with, its figures."""
    settings, run = recovered
    breaker = settings.breaker.model_dump()
    return {"schedule": asdict(schedule),
            "breaker": breaker,
            "breaker_note": f"cooldown_s {args.recovery_cooldown_s:g} and ramp_s {args.recovery_ramp_s:g} set for "
                            "the bench (defaults 5 and 20), on a worker of its own; one worker, per-worker breakers",
            "figures": recovery.analyse(run, breaker)}


if __name__ == "__main__":
    sys.exit(main())
