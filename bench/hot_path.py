"""Benchmark the router's hot path through Kafka with `llmrouter loadtest`, the echo baseline beside each figure.

One worker (a child process, topics of its own) whose only provider is the provider simulator (a child
process too) answering at once (latency 0, no delay between stream events, up to 64 calls at once, so the
provider is never the limit); the local model is off. After a short warm-up, for each rate of ``--rates``
it runs, as a child process and exactly as a user would::

    llmrouter --settings <the worker's> loadtest --rate R --duration D --baseline echo --worker-pid <worker> \\
        --json bench/results/hot_path-R.json --plot bench/results/hot_path-R.png [flags after --]

(open loop, latency from the due time; the router run, then the bare consume->produce echo on the same
schedule); with ``--concurrency N``, one closed-loop run at N outstanding after them, whose answers per
second are the worker's saturation throughput. Then it prints one table: offered rate (or concurrency),
answers per second, router and echo p50/p95/p99, worker and load generator CPU per answered request,
lost / duplicates / errors, and whether the rate was held (answers >= 95 % of the offered rate, nothing
lost). Writes ``bench/results/hot_path.json``.

Usage::

    .venv/bin/python bench/hot_path.py                                  # provider path: 100 and 300 req/s, 20 s each
    .venv/bin/python bench/hot_path.py --rates 100,200,300,500 --duration 30 --concurrency 64
    .venv/bin/python bench/hot_path.py --rates 500,1000,2000 -- --repeat-share 1 --pool-size 16   # cache hits
    .venv/bin/python bench/hot_path.py --rates 100,300 --concurrency 64 --litellm-python /tmp/litellm-venv/bin/python

Needs Kafka and Redis (``.venv/bin/llmrouter infra up``) and matplotlib (``pip install -e ".[bench]"``).
Exits 1 if any run lost, duplicated or failed a request.
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

import yaml

from harness import clean_up, start_worker, worker_settings
from llmrouter.config.settings import Settings
from llmrouter.simulator.process import SimulatorProcess
from llmrouter.testing.worker_process import WorkerProcess

RESULTS = Path(__file__).parent / "results"
SIM_PROVIDER = {"kind": "openai_compatible", "api_key_env": "", "models": ["sim-model"], "timeout_s": 10,
                "max_concurrent": 64}
HELD_SHARE = 0.95


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,300", help="comma list of offered rates, requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per rate")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="seconds at 50 req/s first, not counted")
    parser.add_argument("--drain-s", type=float, default=60.0, help="the load test's drain (later answers are lost)")
    parser.add_argument("--concurrency", type=int, help="then a closed loop at this many outstanding: saturation")
    parser.add_argument("--no-baseline", action="store_true", help="skip the echo baseline")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (settings, worker and simulator logs)")
    parser.add_argument("--out", type=Path, default=RESULTS / "hot_path.json")
    parser.add_argument("--worker-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a worker setting (repeatable), e.g. worker.intake_concurrency=256")
    parser.add_argument("--litellm-python", type=Path, metavar="PATH",
                        help="an interpreter with LiteLLM installed: after the load tests, run bench/litellm_router.py "
                             "with it against the same simulator (LiteLLM's Router and the bare openai client, "
                             "closed loop at --concurrency or 64) and print their rows beside the worker's")
    parser.add_argument("--litellm-count", type=int, default=2000, help="requests per client in that run")
    parser.add_argument("loadtest_args", nargs="*", help="more `llmrouter loadtest` flags, after --")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    return args


def loadtest_command(path: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "llmrouter", "--settings", str(path), "loadtest", *args]


def run_rates(settings_path: Path, worker: WorkerProcess, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The warm-up, then one load test per rate; each one's report."""
    warmup = loadtest_command(settings_path, ["--rate", "50", "--duration", str(args.warmup_s),
                                              "--drain-s", str(args.drain_s)])
    print(f"warming up: {args.warmup_s:g} s at 50 req/s", flush=True)
    subprocess.run(warmup, check=True, stdout=subprocess.DEVNULL)
    reports = []
    runs = [("rate", f"{rate:g}") for rate in args.rates] + (
        [("concurrency", str(args.concurrency))] if args.concurrency else [])
    for how, value in runs:
        out = args.out.with_name(f"{args.out.stem}-{'' if how == 'rate' else 'c'}{value}.json")
        flags = [f"--{how}", value, "--duration", f"{args.duration:g}", "--drain-s", f"{args.drain_s:g}",
                 "--worker-pid", str(worker.pid), "--json", str(out), "--plot", str(out.with_suffix(".png")),
                 *([] if args.no_baseline else ["--baseline", "echo"]), *args.loadtest_args]
        print(f"\n$ llmrouter --settings <the worker's settings> loadtest {shlex.join(flags)}", flush=True)
        subprocess.run(loadtest_command(settings_path, flags), check=True)
        reports.append(json.loads(out.read_text()))
        if worker.returncode is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}:\n{worker.log_tail()}")
    return reports


def row(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one rate for the table and the summary file."""
    router, echo = report["router"], report["baseline"]
    offered = report["schedule"].get("rate_rps")  # None for the closed loop

    def pcts(run: dict[str, Any] | None) -> list[float | None]:
        latency = (run or {}).get("latency") or {}
        return [latency.get(k) for k in ("p50_ms", "p95_ms", "p99_ms")]

    return {"offered_rps": offered, "concurrency": report["schedule"].get("concurrency"),
            "answered_rps": router["answered_rps"], "router_ms": pcts(router),
            "echo_ms": pcts(echo), "worker_cpu_ms": report["cpu"]["worker_ms_per_request"],
            "loadtest_cpu_ms": report["cpu"]["loadtest_ms_per_request"],
            "echo_cpu_ms": report["cpu"]["echo_ms_per_request"], "lost": router["lost"],
            "duplicates": router["duplicates"], "errors": sum(router["errors"].values()),
            "echo_answered_rps": echo["answered_rps"] if echo else None,
            "held": None if offered is None else (router["answered_rps"] >= HELD_SHARE * offered
                                                  and router["lost"] == 0),
            "problems": report["problems"]}


def table(rows: list[dict[str, Any]]) -> str:
    def ms(values: list[float | None]) -> str:
        return " / ".join("-" if v is None else f"{v:.1f}" for v in values)

    def num(value: float | None, fmt: str = ".2f") -> str:
        return "-" if value is None else format(value, fmt)

    lines = ["| offered req/s (or outstanding) | answered req/s | router p50 / p95 / p99 ms | echo p50 / p95 / p99 ms | "
             "worker CPU ms/req | load test CPU ms/req | echo CPU ms/req | lost / dup / errors | held |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        offered = f"{r['offered_rps']:g}" if r["offered_rps"] is not None else f"closed loop, {r['concurrency']}"
        held = {None: "-", True: "yes", False: "no"}[r["held"]]
        lines.append(f"| {offered} | {r['answered_rps']:.1f} | {ms(r['router_ms'])} | {ms(r['echo_ms'])} | "
                     f"{num(r['worker_cpu_ms'])} | {num(r['loadtest_cpu_ms'])} | {num(r['echo_cpu_ms'])} | "
                     f"{r['lost']} / {r['duplicates']} / {r['errors']} | {held} |")
    return "\n".join(lines)


def run_litellm(args: argparse.Namespace, api_base: str) -> dict[str, Any]:
    """bench/litellm_router.py under ``--litellm-python`` against the simulator: its JSON."""
    command = [str(args.litellm_python), str(Path(__file__).with_name("litellm_router.py")), "--api-base", api_base,
               "--count", str(args.litellm_count), "--concurrency", str(args.concurrency or 64)]
    print(f"\n$ {shlex.join(command)}", flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def in_process_table(in_process: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The in-process clients' rows, and the worker's saturation row (the closed loop) for comparison."""
    lines = ["| in front of the same simulator | requests/s | CPU ms per request (its process) | p50 / p95 / p99 ms |",
             "| --- | --- | --- | --- |"]
    names = {"openai": "bare `openai` AsyncOpenAI client, in process",
             "litellm": f"LiteLLM {in_process['versions']['litellm']} Router.acompletion, in process"}
    for key, name in names.items():
        r = in_process[key]
        lines.append(f"| {name} | {r['rps']:.0f} | {r['cpu_ms_per_request']:.2f} | "
                     f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f} |")
    for r in rows:
        if r["offered_rps"] is None:
            lines.append(f"| llm-router worker through Kafka, closed loop {r['concurrency']} | {r['answered_rps']:.0f} | "
                         f"{r['worker_cpu_ms']:.2f} | " + " / ".join(f"{v:.1f}" for v in r["router_ms"]) + " |")
    return "\n".join(lines)


def worker_overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["worker.max_in_flight=64"]`` -> ``{"worker": {"max_in_flight": 64}}`` (values read as YAML)."""
    sections: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        section, _, key = name.partition(".")
        if not key or not _:
            raise SystemExit(f"--worker-set wants SECTION.KEY=VALUE, not {pair!r}")
        sections.setdefault(section, {})[key] = yaml.safe_load(value)
    return sections


def main(argv: list[str] | None = None) -> int:
    """Start the simulator and a worker, run the rates, print and save the table; clean up whatever happens."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill runs the cleanup below, as Ctrl-C does
    args.out.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="llmrouter-bench-hot-path-"))
    sim: SimulatorProcess | None = None
    settings: Settings | None = None
    worker: WorkerProcess | None = None
    started = time.monotonic()
    try:
        sim = SimulatorProcess(log_path=directory / "simulator.log",
                               args=["--latency-ms", "0", "--token-delay-ms", "0"]).start()
        settings, path = worker_settings(directory, local_config={"enabled": False},
                                         providers={"sim": {**SIM_PROVIDER, "endpoint": sim.base_urls()["openai"]}},
                                         fallback_chain=["sim"], **worker_overrides(args.worker_set))
        print(f"starting a worker (log {directory / 'worker.log'})...", flush=True)
        worker = start_worker(settings, path, directory)
        reports = run_rates(path, worker, args)
        in_process = run_litellm(args, sim.base_urls()["openai"]) if args.litellm_python else None
    except KeyboardInterrupt:
        print("interrupted: stopping the worker and the simulator", flush=True)
        return 130
    finally:
        clean_up(worker=worker, sim=sim, settings=settings, directory=directory, keep=args.keep)
    rows = [row(report) for report in reports]
    print(f"\none worker, simulated provider answering at once, {args.duration:g} s per rate, "
          f"{time.monotonic() - started:.0f} s in all\n")
    print(table(rows))
    if in_process is not None:
        print("\n" + in_process_table(in_process, rows))
    args.out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                    "rows": rows, "in_process": in_process}, indent=2) + "\n")
    print(f"\nwrote {args.out} (and one report and plot per rate beside it)")
    problems = [p for r in rows for p in r["problems"]]
    if problems:
        print("\nFAILED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
