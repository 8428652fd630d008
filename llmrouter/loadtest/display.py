"""What a person reads: the progress line while a run goes, and the table at the end. Pure text."""

from __future__ import annotations

from dataclasses import dataclass

from llmrouter.loadtest.stats import LatencyStats, Summary

COLUMNS = ("count", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms")


@dataclass(frozen=True)
class Progress:
    """One look at a run under way; ``recent_*`` cover the last ``interval_s`` seconds, ``p95_ms`` the whole run."""

    label: str
    phase: str  # sending | draining
    elapsed_s: float
    sent: int
    expected: int | None  # how many will be sent, when known in advance
    answered: int
    interval_s: float
    recent_answers: int
    recent_p95_ms: float | None
    p95_ms: float | None


def progress_line(p: Progress, *, width: int = 20) -> str:
    """``[#####...............]  25% router sending 5.0s sent 1500/6000 answered 1490 300/s p95 12.4 ms
    (last 1s 15.0 ms)``: answers per second and p95 over the last interval, p95 over the whole run.

    The bar is the share sent while sending (when the total is known), the share answered while draining.
    """
    done, total = (p.sent, p.expected) if p.phase == "sending" else (p.answered, p.sent)
    if total:
        fraction = min(1.0, done / total)
        bar = f"[{'#' * round(fraction * width):.<{width}}] {fraction * 100:3.0f}% "
    else:
        bar = ""
    rate = p.recent_answers / p.interval_s if p.interval_s > 0 else 0.0
    of = f"/{p.expected}" if p.expected else ""
    return (f"{bar}{p.label} {p.phase} {p.elapsed_s:.1f}s sent {p.sent}{of} answered {p.answered} "
            f"{rate:.0f}/s p95 {_ms(p.p95_ms)} (last {p.interval_s:.0f}s {_ms(p.recent_p95_ms)})")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _row(name: str, stats: LatencyStats | None) -> str:
    if stats is None:
        return f"{name:<26}{0:>8}" + "".join(f"{'-':>9}" for _ in COLUMNS[1:])
    values = (stats.p50_ms, stats.p90_ms, stats.p95_ms, stats.p99_ms, stats.max_ms)
    return f"{name:<26}{stats.count:>8}" + "".join(f"{v:>9.1f}" for v in values)


def latency_table(runs: list[Summary]) -> str:
    """Latency per run: over all answers, per priority, per path (a run with one path shows it once)."""
    lines = [f"{'':<26}{COLUMNS[0]:>8}" + "".join(f"{c:>9}" for c in COLUMNS[1:])]
    for run in runs:
        lines.append(_row(f"{run.label} all", run.latency))
        if len(run.by_priority) > 1:
            lines += [_row(f"  priority {name}", stats) for name, stats in run.by_priority.items()]
        if len(run.by_path) > 1 or (run.by_path and next(iter(run.by_path)) != run.label):
            lines += [_row(f"  path {name}", stats) for name, stats in run.by_path.items()]
    return "\n".join(lines)


def counts_line(run: Summary) -> str:
    """Sent, answered, lost, duplicates, replays and errors of one run, with its throughput."""
    line = (f"{run.label}: sent {run.sent} ({run.sent_rps:.1f}/s), answered {run.answered} "
            f"({run.answered_rps:.1f}/s), lost {run.lost}, duplicates {run.duplicates}, replays {run.replays}, "
            f"errors {run.error_count}")
    if run.strays:
        line += f", strays {run.strays}"
    if run.send_lag is not None:
        line += (f"; sender behind schedule p50 {run.send_lag.p50_ms:.1f} ms, p99 {run.send_lag.p99_ms:.1f} ms, "
                 f"max {run.send_lag.max_ms:.1f} ms")
    if run.ack_lag is not None:
        line += (f"; broker acked sends p50 {run.ack_lag.p50_ms:.1f} ms, p99 {run.ack_lag.p99_ms:.1f} ms, "
                 f"max {run.ack_lag.max_ms:.1f} ms after them")
    return line


def errors_lines(run: Summary) -> list[str]:
    lines = [f"  {run.label} result {key}: {n}" for key, n in sorted(run.errors.items())]
    return lines + [f"  {run.label} send refused ({key}): {n}" for key, n in sorted(run.send_errors.items())]


def cpu_line(cpu: dict) -> str | None:
    """CPU per answered request of the processes that were measured, or None when none was."""
    parts = []
    if cpu.get("worker_ms_per_request") is not None:
        pids = ", ".join(str(p["pid"]) for p in cpu["workers"])
        parts.append(f"worker {cpu['worker_ms_per_request']:.2f} ms (pid {pids})")
    if cpu.get("echo_ms_per_request") is not None:
        parts.append(f"echo {cpu['echo_ms_per_request']:.2f} ms")
    if cpu.get("loadtest_ms_per_request") is not None:
        parts.append(f"this load test {cpu['loadtest_ms_per_request']:.2f} ms")
    return f"CPU per answered request: {', '.join(parts)}" if parts else None


def report_text(header: str, runs: list[Summary], cpu: dict, rss: list[dict]) -> str:
    """The final table and the lines under it."""
    lines = [header, "", latency_table(runs), ""]
    lines += [counts_line(run) for run in runs]
    if line := cpu_line(cpu):
        lines.append(line)
    for usage in rss:
        if usage["exited"]:
            lines.append(f"pid {usage['pid']} exited during the run: its CPU is not counted")
        if "rss_start_mib" in usage:
            lines.append(f"RSS of pid {usage['pid']}: {usage['rss_start_mib']:.1f} -> {usage['rss_end_mib']:.1f} MiB "
                         f"(max {usage['rss_max_mib']:.1f}, {usage['rss_growth_pct']:+.1f} %)")
    errors = [line for run in runs for line in errors_lines(run)]
    if errors:
        lines += ["errors:", *errors]
    return "\n".join(lines)
