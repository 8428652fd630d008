"""CPU time and memory of the processes under test (``--worker-pid``), read with psutil.

CPU is the process's user + system time, taken before the first request is
sent and after the drain: divided by the answers, it is the CPU each request
cost the worker, idle timers included (they are small beside a run of a few
thousand requests). RSS is sampled while the run goes (once a progress tick)
to show whether memory stays flat over a long run. A process that exits
during the run (a worker killed on purpose, say) is reported as such; the
run's figures stand without its CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil

from llmrouter.errors import ConfigError


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


@dataclass
class ProcessUsage:
    """One process's CPU time over a run and its RSS samples ([seconds into the run, MiB])."""

    pid: int
    name: str
    cpu_s: float | None = None  # None when it exited before the end of the run
    rss_samples: list[tuple[float, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        rss = [mib for _, mib in self.rss_samples]
        figures = {"pid": self.pid, "name": self.name, "exited": self.cpu_s is None,
                   "cpu_ms": None if self.cpu_s is None else self.cpu_s * 1000.0}
        if rss:
            figures |= {"rss_start_mib": rss[0], "rss_end_mib": rss[-1], "rss_max_mib": max(rss),
                        "rss_growth_pct": (rss[-1] - rss[0]) / rss[0] * 100.0 if rss[0] else 0.0,
                        "rss_samples": [[round(t, 2), round(mib, 2)] for t, mib in self.rss_samples]}
        return figures


class ProcessSampler:
    """Samples the CPU time and RSS of some processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: list[int]) -> None:
        self._procs: list[psutil.Process] = []
        for pid in pids:
            try:
                self._procs.append(psutil.Process(pid))
            except psutil.Error as exc:
                raise ConfigError(f"--worker-pid {pid}: no such process to sample ({exc})") from None
        self.usage = [ProcessUsage(p.pid, _name(p)) for p in self._procs]
        self._cpu_start: list[float] = []
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu_start = [cpu_seconds(p) for p in self._procs]
        self.sample_rss()

    def sample_rss(self) -> None:
        now = time.monotonic() - self._t0
        for proc, usage in zip(self._procs, self.usage):
            try:
                usage.rss_samples.append((now, proc.memory_info().rss / 2**20))
            except psutil.Error:
                pass  # it exited; stop() says so

    def stop(self) -> None:
        self.sample_rss()
        for proc, usage, start in zip(self._procs, self.usage, self._cpu_start):
            try:
                usage.cpu_s = cpu_seconds(proc) - start
            except psutil.Error:
                usage.cpu_s = None

    @property
    def cpu_s(self) -> float | None:
        """The CPU time of every process over the run; None unless each one lasted to its end."""
        if not self.usage or any(u.cpu_s is None for u in self.usage):
            return None
        return sum(u.cpu_s for u in self.usage)


def _name(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()[:4]) or proc.name()
    except psutil.Error:
        return "?"
