"""A local throw-away Redis (Debian's ``redis-server``) for development and tests.

``up`` starts ``redis-server`` on 127.0.0.1 at the URL's port with no
persistence, ``down`` stops it, ``status`` describes it. A Redis that already
answers PING is used as it is and never stopped: ``down`` only stops the pid
``up`` wrote, after checking it is still a ``redis-server`` working in our
state folder. State lives in ``<state_dir>/redis/{redis.log,redis.pid}``.

:class:`ScratchRedis` is a second, short-lived ``redis-server`` on a port of
its own, for tests and benchmarks that kill, pause or restart Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import redis as redis_py

from llmrouter.infra.process import (
    Echo,
    InfraError,
    default_state_dir,
    is_local_host,
    live_process,
    poll_until,
    port_open,
    read_pid,
    spawn_detached,
    stop_started,
    tail,
    write_pid,
)

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 30.0
DEFAULT_PORT = 6379
INSTALL_HINT = "run `sudo apt-get install -y redis-server`"


@dataclass(frozen=True)
class RedisState:
    """The files of one local Redis under ``<state_dir>/redis``."""

    root: Path

    @classmethod
    def under(cls, state_dir: Path | None) -> RedisState:
        """Return the layout below ``state_dir`` (default ``$LLMROUTER_STATE`` or ``./var``)."""
        return cls((state_dir or default_state_dir()).resolve() / "redis")

    @property
    def log(self) -> Path:
        return self.root / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "redis.pid"


def host_port(url: str) -> tuple[str, int]:
    """Return the host and port a ``redis://`` URL points at."""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"}:
        raise InfraError(f"{url!r} is not a redis:// URL.")
    return parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Tell whether a Redis at ``url`` answers PING."""
    host, port = host_port(url)
    if not port_open(host, port):
        return False
    client = redis_py.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis_py.RedisError:
        return False
    finally:
        client.close()


def wait_for_redis(url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until Redis at ``url`` answers PING; raise ``InfraError`` on timeout."""
    if not poll_until(lambda: answers(url), timeout_s):
        raise InfraError(f"No Redis answered PING at {url} within {timeout_s:.0f} s.")


def our_server(state: RedisState) -> psutil.Process | None:
    """Return the live ``redis-server`` ``up`` started from ``state``, else ``None``."""
    proc = live_process(read_pid(state.pid_file))
    if proc is None:
        return None
    try:
        is_redis = "redis-server" in proc.name() or "redis-server" in " ".join(proc.cmdline())
        if is_redis and Path(proc.cwd()) == state.root:
            return proc
    except psutil.Error:
        pass
    return None


def up(*, url: str = f"redis://127.0.0.1:{DEFAULT_PORT}/0", state_dir: Path | None = None,
       echo: Echo = print) -> None:
    """Make sure Redis answers at ``url``, starting a local one if none does."""
    state = RedisState.under(state_dir)
    host, port = host_port(url)
    ours = our_server(state)
    if answers(url):
        who = f"started by llmrouter, pid {ours.pid}" if ours else "not started by llmrouter; left alone"
        echo(f"Redis already running on {host}:{port} ({who})")
        return
    if port_open(host, port):
        raise InfraError(f"Something listens on {host}:{port} but does not answer Redis PING.")
    if not is_local_host(host):
        raise InfraError(f"No Redis answers at {url}, and only a local one can be started.")
    server = shutil.which("redis-server")
    if server is None:
        raise InfraError(f"`redis-server` is not installed: {INSTALL_HINT}.")
    state.root.mkdir(parents=True, exist_ok=True)
    cmd = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
           "--daemonize", "no", "--dir", str(state.root), "--logfile", ""]
    started = time.monotonic()
    proc = spawn_detached(cmd, log_path=state.log, cwd=state.root)
    write_pid(state.pid_file, proc.pid)
    echo(f"starting Redis on 127.0.0.1:{port} (pid {proc.pid}, log {state.log}) …")
    ready = poll_until(lambda: proc.poll() is not None or answers(url), READY_TIMEOUT_S)
    if ready and proc.poll() is None:
        echo(f"Redis ready on 127.0.0.1:{port} in {time.monotonic() - started:.1f} s")
        return
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    state.pid_file.unlink(missing_ok=True)
    raise InfraError(f"Redis on 127.0.0.1:{port} did not come up.\n--- {state.log} ---\n{tail(state.log)}")


def down(*, state_dir: Path | None = None, wipe: bool = False, echo: Echo = print) -> None:
    """Stop the Redis ``up`` started from ``state_dir`` (only that one); optionally wipe its folder."""
    state = RedisState.under(state_dir)
    stop_started("Redis", state.pid_file, our_server(state), echo, term_timeout_s=STOP_TIMEOUT_S)
    if wipe:
        shutil.rmtree(state.root, ignore_errors=True)
        echo(f"Redis: wiped {state.root}")


def status(
    *, url: str = f"redis://127.0.0.1:{DEFAULT_PORT}/0", state_dir: Path | None = None
) -> dict[str, Any]:
    """Describe the Redis at ``url`` and whether ``up`` started it (JSON-able)."""
    state = RedisState.under(state_dir)
    ours = our_server(state)
    running = answers(url)
    return {
        "running": running,
        "started_by": "llmrouter" if ours else ("external" if running else None),
        "pid": ours.pid if ours else None,
        "url": url,
        "log": str(state.log),
        "state_dir": str(state.root),
    }


class ScratchRedis:
    """A ``redis-server`` of its own on ``port`` (no persistence), to kill, pause and start again on that port."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> ScratchRedis:
        """Start it (again: empty) and wait until it answers PING."""
        if shutil.which("redis-server") is None:
            raise InfraError(f"redis-server is not installed: {INSTALL_HINT}.")
        with open(self.directory / "redis.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory)], stdout=log, stderr=subprocess.STDOUT)
        wait_for_redis(self.url, timeout_s)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (a paused server too), and reap it."""
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
