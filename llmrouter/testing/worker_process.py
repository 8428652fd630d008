"""A router worker in a child process: start it, wait until it is ready, read
its health and metrics, stop or kill it. Used by the demo and the tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from llmrouter.errors import RouterError
from llmrouter.config.settings import Settings


class WorkerProcess:
    def __init__(self, settings: Settings, *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self._env = dict(os.environ if env is None else env)
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the worker has exited, else None."""
        return self._proc.poll() if self._proc else None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.worker.web_host}:{self.settings.worker.web_port}"

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen([sys.executable, "-m", "llmrouter", "worker"], env=self._env,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 120.0, *, consuming_only: bool = False) -> None:
        """Poll ``/health/`` until it says ready (or, with ``consuming_only``, until the worker
        has partitions even if no provider can serve); fail with the log tail if it dies or is late."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise RouterError(f"the worker exited with {code}; last lines of {self.log_path}:\n{self.log_tail()}")
            try:
                health = self.health()
            except (urllib.error.URLError, OSError, ValueError):
                health = {}
            if health.get("ready") or (consuming_only and health.get("kafka", {}).get("assigned_partitions")):
                return
            time.sleep(0.25)
        raise RouterError(f"the worker was not ready within {timeout_s:.0f}s; "
                          f"last lines of {self.log_path}:\n{self.log_tail()}")

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health/", timeout=5) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as exc:  # 503 when not ready still carries the body
            return json.load(exc)

    def get_json(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{self.base_url}{path}", timeout=5) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=5) as reply:
            return reply.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The current value of one sample on ``/metrics/`` (0 when absent)."""
        text = self.get_text("/metrics/")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return 0.0

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        terminate(self._proc, timeout_s)

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to flush, commit or say goodbye."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def terminate(proc: subprocess.Popen | None, timeout_s: float) -> None:
    """SIGTERM a child, then SIGKILL it if it has not exited within ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
