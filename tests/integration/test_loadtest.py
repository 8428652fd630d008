"""`llmrouter loadtest` through the real command against a real worker: the CI smoke run.

The worker serves simple tasks with the tiny local model and complex ones
with one simulated OpenAI-compatible provider that answers at once. The load
test runs as a child process (`python -m llmrouter loadtest`), reads its JSON
report, and checks that nothing was lost, duplicated or failed and that the
counts add up, for the router and for the echo baseline of the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from llmrouter.loadtest.procstats import ProcessSampler, cpu_seconds
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import SimulatorThread, isolated_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka


@dataclass
class Served:
    worker: WorkerProcess
    settings_path: Path


@pytest.fixture(scope="module")
def served(kafka_and_redis, tiny_model_dir, tmp_path_factory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("loadtest")
    with SimulatorThread(SimProfile(latency_ms=0, token_delay_ms=0)) as sims:
        settings, path = isolated_settings(directory, tiny_model_dir, providers={"sim": sim_provider(sims.sims[0])},
                                           fallback_chain=["local", "sim"])
        worker = start_worker(path, settings, directory / "worker.log")
        try:
            yield Served(worker, path)
        finally:
            worker.stop()


def loadtest(served: Served, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTER")}
    return subprocess.run([sys.executable, "-m", "llmrouter", "--settings", str(served.settings_path), "loadtest",
                           *args], env=env, capture_output=True, text=True, timeout=120)


def counts(stats_by_name: dict[str, dict]) -> dict[str, int]:
    return {name: stats["count"] for name, stats in stats_by_name.items()}


def test_an_open_loop_smoke_run_loses_nothing_duplicates_nothing_and_fails_nothing(served, tmp_path):
    """300 requests at 100/s, four priorities, simple and complex, some streamed, some repeated, with the echo
    baseline: every request answered once and ok, the counts add up, the report and the plot are written."""
    report_path, plot_path = tmp_path / "report.json", tmp_path / "latency.png"
    done = loadtest(served, "--rate", "100", "--count", "300", "--priorities", "critical=1,high=2,normal=6,low=1",
                    "--complex-share", "0.5", "--stream-share", "0.1", "--repeat-share", "0.3", "--max-tokens", "4",
                    "--worker-pid", str(served.worker.pid), "--baseline", "echo", "--json", str(report_path),
                    "--plot", str(plot_path), "--fail-on-loss", "--drain-s", "20")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report = json.loads(report_path.read_text())
    router, echo = report["router"], report["baseline"]
    for run in (router, echo):
        assert (run["sent"], run["answered"], run["lost"], run["duplicates"], run["strays"]) == (300, 300, 0, 0, 0)
        assert run["errors"] == {} and run["send_errors"] == {} and run["latency_from"] == "due"
        assert sum(counts(run["by_priority"]).values()) == 300 == run["latency"]["count"]
        assert set(run["by_priority"]) == {"critical", "high", "normal", "low"}
        assert sum(counts(run["by_path"]).values()) == 300
        assert run["latency"]["p50_ms"] <= run["latency"]["p99_ms"] <= run["latency"]["max_ms"]
    assert {"local", "cloud"} <= set(router["by_path"]) <= {"local", "cloud", "l1", "l2", "l3"}
    assert set(echo["by_path"]) == {"echo"}
    assert report["cpu"]["worker_ms_per_request"] > 0 and report["cpu"]["echo_ms_per_request"] > 0
    assert report["workers"][0]["pid"] == served.worker.pid and report["workers"][0]["rss_start_mib"] > 0
    assert report["problems"] == []
    assert plot_path.read_bytes().startswith(b"\x89PNG")
    assert "router all" in done.stdout and "echo all" in done.stdout


def test_a_closed_loop_keeps_its_concurrency_and_counts_latency_from_the_send(served, tmp_path):
    """--concurrency: every request answered by the cloud path, latency from the send, no sender lag."""
    report_path = tmp_path / "report.json"
    done = loadtest(served, "--concurrency", "4", "--count", "60", "--complex-share", "1", "--json",
                    str(report_path), "--fail-on-loss")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    router = json.loads(report_path.read_text())["router"]
    assert (router["sent"], router["answered"], router["lost"], router["latency_from"]) == (60, 60, 0, "send")
    assert counts(router["by_path"]) == {"cloud": 60} and router["send_lag"] is None


def test_fail_on_loss_exits_1_when_requests_come_back_as_errors(served, tmp_path):
    """Requests allowed only a provider nobody knows are rejected: reported by code, and the exit code says so."""
    report_path = tmp_path / "report.json"
    done = loadtest(served, "--rate", "50", "--count", "10", "--provider", "nobody", "--json", str(report_path),
                    "--fail-on-loss")
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    router = json.loads(report_path.read_text())["router"]
    assert router["errors"] == {"rejected/unknown_provider": 10} and router["lost"] == 0
    assert "router: error results rejected/unknown_provider x10" in done.stderr



def test_the_cpu_of_a_worker_is_measured_and_one_that_exits_during_the_run_is_reported_not_fatal():
    """--worker-pid: CPU over the run for a process that lasts; for one that exits, no CPU and no crash."""
    spin = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    short = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        sampler = ProcessSampler([busy.pid, short.pid])
        sampler.start()
        started_cpu_s = cpu_seconds(psutil.Process(busy.pid))
        short.communicate(b"")  # it exits now
        deadline = time.monotonic() + 10
        while cpu_seconds(psutil.Process(busy.pid)) < started_cpu_s + 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler.stop()
    finally:
        busy.kill()
        busy.wait()
    lasting, exited = (u.as_dict() for u in sampler.usage)
    assert lasting["cpu_ms"] >= 200 and not lasting["exited"] and lasting["rss_start_mib"] > 0
    assert exited["exited"] and exited["cpu_ms"] is None
    assert sampler.cpu_s is None  # not every process lasted: no total to divide
