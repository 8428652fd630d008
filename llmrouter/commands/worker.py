"""``llmrouter worker --processes N``: N worker processes of one consumer group on one machine.

A faust worker runs its agents on one event loop, so it uses one core; N processes in the same group
share the partitions (Kafka balances them) and use N. Each child is an ordinary ``llmrouter worker``
with its own web port (``worker.web_port + i``) and data directory (``worker.datadir/p<i>``: RocksDB
tables and the L3 cache are per process), set through the settings' environment overrides. The
parent only supervises: it forwards SIGTERM/SIGINT, restarts a child that died (after
``RESTART_DELAY_S``), and exits when every child has stopped. Each child loads its own local model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llmrouter.config.settings import Settings

RESTART_DELAY_S = 1.0
POLL_S = 0.2


def child_env(settings: Settings, index: int, base: dict[str, str]) -> dict[str, str]:
    """The environment of child ``index``: its web port and data directory as settings overrides."""
    return {**base, "LLMROUTER__WORKER__WEB_PORT": str(settings.worker.web_port + index),
            "LLMROUTER__WORKER__DATADIR": str(Path(settings.worker.datadir) / f"p{index}")}


def child_command(settings_path: str | None, loglevel: str) -> list[str]:
    command = [sys.executable, "-m", "llmrouter"]
    if settings_path:
        command += ["--settings", settings_path]
    return command + ["worker", "--processes", "1", "--loglevel", loglevel]


def supervise(settings: Settings, processes: int, *, settings_path: str | None, loglevel: str) -> int:
    """Run ``processes`` workers until SIGTERM/SIGINT; the exit code of the last child to fail, else 0."""
    command = child_command(settings_path, loglevel)
    children: dict[int, subprocess.Popen] = {}
    stopping = False

    def start(index: int) -> None:
        children[index] = subprocess.Popen(command, env=child_env(settings, index, dict(os.environ)))
        print(f"llmrouter: worker process {index} started (pid {children[index].pid}, web port "
              f"{settings.worker.web_port + index})", file=sys.stderr, flush=True)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(processes):
        start(index)
    code = 0
    while children:
        time.sleep(POLL_S)
        for index, child in list(children.items()):
            returncode = child.poll()
            if returncode is None:
                continue
            del children[index]
            if stopping:
                continue
            code = returncode or code
            print(f"llmrouter: worker process {index} exited with {returncode}; restarting it in "
                  f"{RESTART_DELAY_S:g} s", file=sys.stderr, flush=True)
            time.sleep(RESTART_DELAY_S)
            if not stopping:
                start(index)
    return code if not stopping else 0
