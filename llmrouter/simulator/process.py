"""The provider simulator in a child process (``llmrouter simulate``): start it,
wait until it answers, drive its control API, stop it. Used by the demo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from llmrouter.errors import RouterError
from llmrouter.testing.worker_process import terminate


class SimulatorProcess:
    def __init__(self, *, log_path: Path, args: list[str], env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host, self.port = host, port or _free_port(host)
        self.log_path = log_path
        self._args = args
        self._env = dict(os.environ if env is None else env)
        self._proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_urls(self) -> dict[str, str]:
        """The endpoint to give each kind of provider."""
        return {"openai": f"{self.base_url}/v1", "huggingface": self.base_url, "anthropic": self.base_url}

    def start(self, timeout_s: float = 30.0) -> SimulatorProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "llmrouter", "simulate", "--host", self.host, "--port", str(self.port),
                 *self._args], env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RouterError(f"the simulator exited with {self._proc.returncode}; see {self.log_path}")
            try:
                self.stats()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RouterError(f"the simulator did not answer within {timeout_s:.0f}s; see {self.log_path}")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats")

    def script(self, outcomes: list[str], flavor: str | None = None) -> dict[str, Any]:
        """The next requests (of ``flavor``, or any) take these outcomes in order."""
        return self._call("POST", "/_sim/script", {"outcomes": outcomes, "flavor": flavor})

    def stop(self, timeout_s: float = 10.0) -> None:
        terminate(self._proc, timeout_s)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.load(reply)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
