"""Process plumbing: the one start/wait/stop helper of every child process llm-router runs.

Nothing here knows about Kafka, Redis or the router: it starts children with
their output in a log file, polls for a readiness condition with a deadline,
stops a process with SIGTERM and then SIGKILL after a bound, reads a log's
tail, probes TCP ports and keeps pid files. Two kinds of caller use it:

* ``llmrouter infra up/down`` (:mod:`llmrouter.infra.kafka`, :mod:`.redis`):
  detached services that outlive the command, found again by pid file and
  stopped by :func:`stop_process` on a :class:`psutil.Process`;
* the router's own children, a worker (:mod:`llmrouter.testing.worker_process`)
  and the provider simulator (:mod:`llmrouter.simulator.process`), owned by the
  process that started them: a :class:`Child`.

It lives here, in ``infra/`` (installed as ``llmrouter.infra``), rather than in
``llmrouter/testing/``, because production code needs it (``llmrouter infra up``
and the demo): the dependency runs from the test helpers to it, never from a
production command into a package of test helpers.

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
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psutil

from llmrouter.errors import InfraError

T = TypeVar("T")
Echo = Callable[[str], Any]

POLL_INTERVAL_S = 0.2
KILL_TIMEOUT_S = 5.0  # how long a SIGKILLed process may take to be gone


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


def poll_until(condition: Callable[[], bool], timeout_s: float, *, interval_s: float = POLL_INTERVAL_S) -> bool:
    """Call ``condition`` until it is true or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


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


def spawn_detached(cmd: list[str], *, log_path: Path, cwd: Path | None = None,
                   env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=None if env is None else dict(env),
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


def stop_process(proc: psutil.Process | subprocess.Popen[bytes], *, term_timeout_s: float = 30.0) -> str:
    """SIGTERM ``proc``, SIGKILL it after ``term_timeout_s``; say which it took.

    ``proc`` is a service found by its pid file (a :class:`psutil.Process`) or a
    child this process owns (a :class:`subprocess.Popen`, reaped here so its exit
    code is kept)."""
    if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
        return "already gone"
    try:
        proc.send_signal(signal.SIGTERM)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return "already gone"
    if _gone_within(proc, term_timeout_s):
        return "stopped"
    try:
        proc.kill()
    except (psutil.NoSuchProcess, ProcessLookupError):
        return "stopped"
    _gone_within(proc, KILL_TIMEOUT_S)
    return "killed after SIGTERM timed out"


def _gone_within(proc: psutil.Process | subprocess.Popen[bytes], timeout_s: float) -> bool:
    if isinstance(proc, subprocess.Popen):
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    return poll_until(lambda: live_process(proc.pid) is None, timeout_s)


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


class Child:
    """A child process this process started and owns: its output in a log file, waited for, stopped or killed."""

    def __init__(self, proc: subprocess.Popen[bytes], *, log_path: Path, what: str) -> None:
        self.proc, self.log_path, self.what = proc, log_path, what

    @classmethod
    def start(cls, cmd: list[str], *, log_path: Path, what: str, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Child:
        """Start ``cmd`` (``what`` names it in messages: "worker", "simulator") in a session of its own."""
        return cls(spawn_detached(cmd, log_path=log_path, cwd=cwd, env=env), log_path=log_path, what=what)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited, else None."""
        return self.proc.poll()

    def wait_until(self, ready: Callable[[], bool], *, timeout_s: float, interval_s: float = POLL_INTERVAL_S,
                   error: type[Exception] = InfraError) -> None:
        """Poll ``ready`` until it is true; raise ``error`` with the log's tail if the child exits or is late."""
        exited = False

        def done() -> bool:
            nonlocal exited
            exited = self.returncode is not None
            return exited or ready()

        if not poll_until(done, timeout_s, interval_s=interval_s):
            raise error(f"the {self.what} was not ready within {timeout_s:.0f}s; "
                        f"last lines of {self.log_path}:\n{self.log_tail()}")
        if exited:
            raise error(f"the {self.what} exited with {self.returncode}; "
                        f"last lines of {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> str:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; say which it took."""
        return stop_process(self.proc, term_timeout_s=timeout_s)

    def kill(self) -> None:
        """SIGKILL: the child gets no chance to flush, commit or say goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)
