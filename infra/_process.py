"""Process plumbing shared by the local Kafka and Redis launchers.

Nothing here knows about Kafka or Redis: it polls for conditions, probes TCP
ports, starts detached children, keeps pid files and stops only the process a
pid file names (after the caller has checked that process is really ours).

Errors::

    InfraError          any failure to start, stop or reach a local service
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psutil

from llmrouter.errors import InfraError

T = TypeVar("T")
Echo = Callable[[str], Any]

POLL_INTERVAL_S = 0.2


def default_state_dir() -> Path:
    """Return ``$LLMROUTER_STATE`` or ``./var``, resolved against the cwd."""
    return Path(os.environ.get("LLMROUTER_STATE", "var")).resolve()


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """Split ``host:port`` (first entry of a comma list) into its parts."""
    first = address.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep:
        return first, default_port
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError as exc:
        raise InfraError(f"{address!r} is not a host:port address.") from exc


def is_local_host(host: str) -> bool:
    """Tell whether ``host`` names this machine's loopback interface."""
    return host in {"127.0.0.1", "localhost", "::1"}


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def poll_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Call ``condition`` until it is true or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also when called from inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file, or a note if absent."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def spawn_detached(cmd: list[str], *, log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with stdout and stderr in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def read_pid(pid_file: Path) -> int | None:
    """Return the pid stored in ``pid_file``, or ``None`` if there is none."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    """Store ``pid`` in ``pid_file``."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid}\n")


def live_process(pid: int | None) -> psutil.Process | None:
    """Return the running (non-zombie) process ``pid``, or ``None``."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None
        return proc
    except psutil.Error:
        return None


def stop_process(proc: psutil.Process, *, term_timeout_s: float = 30.0) -> str:
    """SIGTERM ``proc``, SIGKILL it after ``term_timeout_s``; say which it took."""
    pid = proc.pid
    try:
        proc.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        return "already gone"
    if poll_until(lambda: live_process(pid) is None, term_timeout_s):
        return "stopped"
    try:
        proc.kill()
    except psutil.NoSuchProcess:
        return "stopped"
    poll_until(lambda: live_process(pid) is None, 5.0)
    return "killed after SIGTERM timed out"


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our own child (else do nothing)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_started(label: str, pid_file: Path, ours: psutil.Process | None, echo: Echo,
                 *, term_timeout_s: float = 30.0) -> None:
    """Stop ``ours`` (the process ``up`` started, if still alive), drop its pid file, say what happened."""
    pid = read_pid(pid_file)
    if ours is not None:
        echo(f"{label} (pid {pid}) {stop_process(ours, term_timeout_s=term_timeout_s)}")
    elif pid is not None:
        echo(f"{label}: pid file named {pid}, which is no longer our {label}; removed the stale pid file")
    else:
        echo(f"{label}: nothing started by llmrouter to stop")
    pid_file.unlink(missing_ok=True)
