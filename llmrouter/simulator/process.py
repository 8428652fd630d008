"""The provider simulator in a child process (``llmrouter simulate``): start it,
wait until it answers, drive its control API, stop it. Used by the demo.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from llmrouter.errors import RouterError
from llmrouter.infra.process import Child
from llmrouter.testing.ports import free_port


class SimulatorProcess:
    def __init__(self, *, log_path: Path, args: list[str], env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host, self.port = host, port or free_port(host)
        self.log_path = log_path
        self._args = args
        self._env = dict(os.environ if env is None else env)
        self._child: Child | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_urls(self) -> dict[str, str]:
        """The endpoint to give each kind of provider."""
        return {"openai": f"{self.base_url}/v1", "huggingface": self.base_url, "anthropic": self.base_url}

    def start(self, timeout_s: float = 30.0) -> SimulatorProcess:
        """Start it and wait until its control API answers; fail with the log's tail if it dies or is late."""
        self._child = Child.start([sys.executable, "-m", "llmrouter", "simulate", "--host", self.host,
                                   "--port", str(self.port), *self._args],
                                  log_path=self.log_path, what="simulator", env=self._env)
        self._child.wait_until(self._answers, timeout_s=timeout_s, interval_s=0.1, error=RouterError)
        return self

    def _answers(self) -> bool:
        try:
            self.stats()
        except (urllib.error.URLError, OSError):
            return False
        return True

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats")

    def script(self, outcomes: list[str], flavor: str | None = None) -> dict[str, Any]:
        """The next requests (of ``flavor``, or any) take these outcomes in order."""
        return self._call("POST", "/_sim/script", {"outcomes": outcomes, "flavor": flavor})

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._child is not None:
            self._child.stop(timeout_s)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.load(reply)

