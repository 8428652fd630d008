"""The one child-process helper (llmrouter/infra/process.py): start with a log, wait for readiness, stop, kill.

Small `python -c` children stand in for the worker and the simulator; each test takes well under a second
except the SIGKILL fallback, which waits out its short bound.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from llmrouter.errors import RouterError
from llmrouter.infra.process import Child, InfraError, stop_process

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)"]


def test_a_child_writes_its_output_to_its_log_and_is_ready_when_the_condition_holds(tmp_path: Path):
    """wait_until returns once the condition is true; the log's tail shows what the child printed."""
    child = Child.start(SLEEPER, log_path=tmp_path / "logs" / "child.log", what="sleeper")
    try:
        child.wait_until(lambda: "up" in child.log_tail(), timeout_s=10, interval_s=0.02)
        assert child.returncode is None and child.log_tail().strip() == "up"
    finally:
        assert child.stop(5) == "stopped"
    assert child.returncode == -signal.SIGTERM


def test_a_child_that_exits_before_it_is_ready_fails_with_its_code_and_log(tmp_path: Path):
    """The error names the child, its exit code and the last lines of its log, in the caller's error type."""
    child = Child.start([sys.executable, "-c", "print('no model here'); raise SystemExit(3)"],
                        log_path=tmp_path / "child.log", what="worker")
    with pytest.raises(RouterError, match=r"the worker exited with 3(.|\n)*no model here"):
        child.wait_until(lambda: False, timeout_s=10, interval_s=0.02, error=RouterError)


def test_a_child_that_is_late_fails_after_the_deadline(tmp_path: Path):
    """Never ready within the bound: InfraError by default, saying how long it waited."""
    child = Child.start(SLEEPER, log_path=tmp_path / "child.log", what="simulator")
    try:
        with pytest.raises(InfraError, match="the simulator was not ready within 0s"):
            child.wait_until(lambda: False, timeout_s=0.2, interval_s=0.05)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL


def test_a_child_that_ignores_sigterm_is_killed_after_the_bound(tmp_path: Path):
    """SIGTERM first; a child that ignores it gets SIGKILL once the bound has passed."""
    child = Child.start(STUBBORN, log_path=tmp_path / "child.log", what="stubborn")
    child.wait_until(lambda: "up" in child.log_tail(), timeout_s=10, interval_s=0.02)
    assert child.stop(0.3) == "killed after SIGTERM timed out"
    assert child.returncode == -signal.SIGKILL


def test_stopping_a_child_that_has_exited_says_so(tmp_path: Path):
    """Nothing is signalled twice; the exit code stays the child's own."""
    child = Child.start([sys.executable, "-c", "pass"], log_path=tmp_path / "child.log", what="short")
    child.proc.wait(10)
    assert stop_process(child.proc) == "already gone" and child.returncode == 0
