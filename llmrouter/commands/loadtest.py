"""``llmrouter loadtest``: the command line, the runs in order, the report.

The router run comes first, then (``--baseline echo``) the echo baseline on
the same schedule with the same workload, one after the other so the two
never compete for the CPU. The figures go to stdout as a table, to ``--json``
as a report and to ``--plot`` as a PNG; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmrouter.wire.codec import Codec, encode_json
from llmrouter.wire.contract import PRIORITIES
from llmrouter.errors import ConfigError, UndecodableRequest
from llmrouter.loadtest.baseline import echo_baseline
from llmrouter.loadtest.display import Progress, progress_line, report_text
from llmrouter.loadtest.kafka_run import RunOptions, Target, run_load
from llmrouter.loadtest.plot import plot_latency, require_matplotlib
from llmrouter.loadtest.procstats import ProcessSampler
from llmrouter.loadtest.schedule import ARRIVALS, Bounds, ClosedLoop, OpenLoop, Schedule
from llmrouter.loadtest.stats import Answer, Tally
from llmrouter.loadtest.workload import Workload, WorkloadSpec, parse_priority_mix
from llmrouter.runtime.publisher import REPLAY_HEADER
from llmrouter.config.settings import Settings
from llmrouter.topics import REQUESTS, RESULTS

QUIET_TICKS = 5  # progress ticks between two lines when stderr is not a terminal


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("loadtest", help="load the router through Kafka; latency, loss and duplicates",
                       description="Produce requests to the router's request topics on a schedule, read "
                                   "llm.results, and report throughput, latency per priority and per path, "
                                   "errors, lost requests and duplicates. Stops by itself.")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--rate", type=float, help="open loop: requests per second (latency from the due time)")
    how.add_argument("--concurrency", type=int, help="closed loop: requests outstanding (latency from the send)")
    p.add_argument("--count", type=int, help="send this many requests (with --duration: whichever ends first)")
    p.add_argument("--duration", type=float, metavar="S", help="send for this many seconds")
    p.add_argument("--arrivals", choices=ARRIVALS, default="uniform", help="open loop: evenly spaced or Poisson")
    p.add_argument("--priorities", default="normal", metavar="MIX",
                   help="weighted priority mix, e.g. critical=1,high=2,normal=6,low=1 (default: normal)")
    p.add_argument("--repeat-share", type=float, default=0.0, metavar="P",
                   help="share of requests that reuse a prompt from a small pool (sets the cache-hit ratio)")
    p.add_argument("--pool-size", type=int, default=16, metavar="N", help="prompts in that pool")
    p.add_argument("--complex-share", type=float, default=0.0, metavar="P",
                   help="share of complex tasks (cloud first); the others are simple (local model first)")
    p.add_argument("--stream-share", type=float, default=0.0, metavar="P", help="share of streamed requests")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--provider", action="append", dest="providers", metavar="NAME",
                   help="allow-list every request carries (repeat for more than one)")
    p.add_argument("--encoding", choices=["avro", "json"], default="avro")
    p.add_argument("--seed", type=int, default=1, help="seed of the workload and of Poisson arrivals")
    p.add_argument("--drain-s", type=float, default=30.0, metavar="S",
                   help="after the last send, wait this long for answers; later ones count as lost")
    p.add_argument("--linger-ms", type=float, default=2.0, metavar="MS", help="producer batching delay")
    p.add_argument("--worker-pid", type=int, action="append", default=[], metavar="PID",
                   help="measure this process's CPU per request and its RSS (repeat for several workers)")
    p.add_argument("--baseline", choices=["echo"],
                   help="also run a bare consume->produce echo through the same broker, same schedule")
    p.add_argument("--json", type=Path, dest="json_path", metavar="PATH", help="write the report as JSON")
    p.add_argument("--plot", type=Path, metavar="PATH.png", help="latency histogram and CDF per path")
    p.add_argument("--fail-on-loss", action="store_true",
                   help="exit 1 if anything was lost, duplicated, refused or answered with an error")
    p.set_defaults(func=run)


def check_loopback(bootstrap: str) -> None:
    """The load test runs against a broker on this machine only: refuse any other bootstrap server."""
    for server in (s.strip() for s in bootstrap.split(",") if s.strip()):
        host = server.rsplit(":", 1)[0].strip("[]") if ":" in server else server
        if host == "localhost":
            continue
        try:
            if ipaddress.ip_address(host).is_loopback:
                continue
        except ValueError:
            pass
        raise ConfigError(f"llmrouter loadtest runs against a broker on this machine only (loopback); "
                          f"kafka.bootstrap_servers names {server!r}")


def router_target(settings: Settings) -> Target:
    """The router's request topics (under the settings' prefix) and llm.results, decoded as LLMResult."""
    codec = Codec()

    def read(key: bytes, value: bytes, headers: Any) -> tuple[str, Answer]:
        replay = any(k == REPLAY_HEADER for k, _ in headers or ())
        try:
            record = codec.decode("LLMResult", value)
        except UndecodableRequest:
            return (key or b"").decode(errors="replace"), Answer(status="error", error_code="undecodable_result",
                                                                 replay=replay)
        return record["request_id"], Answer(status=record["status"], route=record.get("route") or "none",
                                            cache_level=record.get("cache_level") or "none",
                                            error_code=record.get("error_code"), replay=replay)

    requests = {p: settings.topic(REQUESTS.format(priority=p)) for p in PRIORITIES}
    return Target("router", requests, settings.topic(RESULTS), read)


class ProgressPrinter:
    """The progress line on stderr: rewritten in place on a terminal, a line every few ticks elsewhere."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._ticks = 0

    def __call__(self, progress: Progress) -> None:
        self._ticks += 1
        if self._tty:
            self._stream.write(f"\r\x1b[K{progress_line(progress)}")
            self._stream.flush()
        elif self._ticks % QUIET_TICKS == 1:
            print(progress_line(progress), file=self._stream, flush=True)

    def end(self) -> None:
        if self._tty and self._ticks:
            self._stream.write("\n")
        self._ticks = 0


@dataclass
class Measured:
    """The runs' tallies, and CPU per answered request of each process measured."""

    router: Tally
    echo: Tally | None
    cpu: dict[str, Any]


def run(args: argparse.Namespace, settings: Settings) -> int:
    check_loopback(settings.kafka.bootstrap_servers)
    if args.plot:
        require_matplotlib()
    if not args.drain_s > 0:
        raise ConfigError(f"--drain-s must be more than 0, not {args.drain_s:g}")
    schedule: Schedule = (OpenLoop(args.rate, args.arrivals, args.seed) if args.rate is not None
                          else ClosedLoop(args.concurrency, give_up_s=args.drain_s))
    bounds = Bounds(args.count, args.duration)
    spec = WorkloadSpec(priorities=parse_priority_mix(args.priorities), repeat_share=args.repeat_share,
                        pool_size=args.pool_size, complex_share=args.complex_share, stream_share=args.stream_share,
                        max_tokens=args.max_tokens, providers=tuple(args.providers) if args.providers else None,
                        seed=args.seed)
    codec = Codec()
    encode = (lambda r: codec.encode_avro("LLMRequest", r)) if args.encoding == "avro" else encode_json
    options = RunOptions(drain_s=args.drain_s, linger_ms=args.linger_ms)
    workers = ProcessSampler(args.worker_pid)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    measured = asyncio.run(_measure(settings, spec, schedule, bounds, encode, options, workers, args.baseline))

    header = (f"llmrouter loadtest: {schedule.describe()}, {_bounds_text(bounds)}, priorities {args.priorities}, "
              f"repeat {spec.repeat_share:g}, complex {spec.complex_share:g}, stream {spec.stream_share:g}, "
              f"{args.encoding}, latency from the {'due time' if isinstance(schedule, OpenLoop) else 'send'}")
    runs = [measured.router.summary()] + ([measured.echo.summary()] if measured.echo else [])
    rss = [u.as_dict() for u in workers.usage]
    print(report_text(header, runs, measured.cpu, rss))
    problems = [problem for summary in runs for problem in summary.problems()]
    if args.json_path:
        report = {"tool": "llmrouter loadtest", "started_at": started_at, "argv": sys.argv[1:],
                  "bootstrap": settings.kafka.bootstrap_servers, "topic_prefix": settings.kafka.topic_prefix,
                  "encoding": args.encoding, "schedule": _schedule_dict(schedule),
                  "bounds": {"count": bounds.count, "duration_s": bounds.duration_s},
                  "drain_s": options.drain_s, "linger_ms": options.linger_ms, "workload": spec.as_dict(),
                  "router": runs[0].as_dict(), "baseline": runs[1].as_dict() if len(runs) > 1 else None,
                  "cpu": measured.cpu, "workers": rss, "problems": problems}
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json_path}")
    if args.plot:
        series = {t.label: t.latencies_by_path() for t in (measured.router, measured.echo) if t is not None}
        print(f"wrote {plot_latency(series, header, args.plot)}")
    if problems and args.fail_on_loss:
        for problem in problems:
            print(f"llmrouter loadtest: {problem}", file=sys.stderr)
        return 1
    return 0


async def _measure(settings: Settings, spec: WorkloadSpec, schedule: Schedule, bounds: Bounds,
                   encode: Callable[[dict[str, Any]], bytes], options: RunOptions, workers: ProcessSampler,
                   baseline: str | None) -> Measured:
    """The router run (worker CPU and RSS sampled), then the echo baseline's (its CPU sampled)."""
    bootstrap = settings.kafka.bootstrap_servers
    printer = ProgressPrinter()
    own_cpu: list[float] = []

    def router_started() -> None:
        workers.start()
        own_cpu.append(time.process_time())

    def router_progress(progress: Progress) -> None:
        workers.sample_rss()
        printer(progress)

    try:
        router = await run_load(bootstrap, router_target(settings), Workload(spec, _run_id()), schedule, bounds,
                                encode=encode, options=options, on_start=router_started, on_progress=router_progress)
    finally:
        printer.end()
    own_cpu.append(time.process_time())
    workers.stop()
    cpu: dict[str, Any] = {"workers": [{"pid": u.pid, "cpu_ms": u.as_dict()["cpu_ms"]} for u in workers.usage],
                           "worker_ms_per_request": _per(workers.cpu_s, router.answered),
                           "loadtest_ms_per_request": _per(own_cpu[1] - own_cpu[0], router.answered),
                           "echo_ms_per_request": None}
    echo: Tally | None = None
    if baseline == "echo":
        run_id = _run_id()
        async with echo_baseline(settings, run_id, linger_ms=options.linger_ms) as running:
            sampler = ProcessSampler([running.pid])
            try:
                echo = await run_load(bootstrap, running.target, Workload(spec, run_id), schedule, bounds,
                                      encode=encode, options=options, on_start=sampler.start, on_progress=printer)
            finally:
                printer.end()
            sampler.stop()
        cpu["echo_ms_per_request"] = _per(sampler.cpu_s, echo.answered)
    return Measured(router=router, echo=echo, cpu=cpu)


def _run_id() -> str:
    """Fresh for every run, whatever the seed: request_ids are never reused (a reused one is answered from
    the router's idempotency table instead of being served)."""
    return f"lt{uuid.uuid4().hex[:10]}"


def _per(seconds: float | None, count: int) -> float | None:
    return seconds * 1000.0 / count if seconds is not None and count else None


def _bounds_text(bounds: Bounds) -> str:
    parts = ([f"{bounds.count} requests"] if bounds.count else []) + (
        [f"{bounds.duration_s:g} s"] if bounds.duration_s else [])
    return "up to " + " or ".join(parts)


def _schedule_dict(schedule: Schedule) -> dict[str, Any]:
    if isinstance(schedule, OpenLoop):
        return {"kind": "open", "rate_rps": schedule.rate_rps, "arrivals": schedule.arrivals}
    return {"kind": "closed", "concurrency": schedule.concurrency, "give_up_s": schedule.give_up_s}
