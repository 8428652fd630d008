"""A router worker in a child process: start it, wait until it is ready, read
its health and metrics, stop or kill it. Used by the demo, the tests and bench/.

Starting, waiting and stopping are :class:`llmrouter.infra.process.Child`'s, the
one process helper; this module adds what only a worker has (its web views).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from llmrouter.config.settings import Settings
from llmrouter.errors import RouterError
from llmrouter.infra.process import Child, tail
from llmrouter.config.secrets import ADMIN_KEY_ENV, ADMIN_KEY_HEADER
from llmrouter.providers.spec import DEFAULT_KEY_ENV


def isolated_env(settings_path: Path, keys: Mapping[str, str] | None = None, *,
                 base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A worker child's environment: ``base`` (this process's) without any LLMROUTER variable or API key, then
    ``keys`` (the only API keys it gets: a developer's own never leak into tests or benchmarks), then the
    settings file."""
    hidden = set(DEFAULT_KEY_ENV.values()) | {"LLMROUTER_SECRETS_FILE"}
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("LLMROUTER") and k not in hidden}
    return env | dict(keys or {}) | {"LLMROUTER_SETTINGS": str(settings_path)}


class WorkerProcess:
    def __init__(self, settings: Settings, *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self._env = dict(os.environ if env is None else env)
        self._child: Child | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def returncode(self) -> int | None:
        """The exit code once the worker has exited, else None."""
        return self._child.returncode if self._child else None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.worker.web_host}:{self.settings.worker.web_port}"

    def start(self) -> WorkerProcess:
        self._child = Child.start([sys.executable, "-m", "llmrouter", "worker"], log_path=self.log_path,
                                  what="worker", env=self._env)
        return self

    def wait_ready(self, timeout_s: float = 120.0, *, consuming_only: bool = False) -> None:
        """Poll ``/health/`` until it says ready (or, with ``consuming_only``, until the worker
        has partitions even if no provider can serve); fail with the log tail if it dies or is late."""
        if self._child is None:
            raise RouterError("the worker was never started; call start() first")

        def ready() -> bool:
            try:
                health = self.health()
            except (urllib.error.URLError, OSError, ValueError):
                return False
            return bool(health.get("ready") or (consuming_only and health.get("kafka", {}).get("assigned_partitions")))

        self._child.wait_until(ready, timeout_s=timeout_s, interval_s=0.25, error=RouterError)

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health/", timeout=5) as reply:
                return json.load(reply)
        except urllib.error.HTTPError as exc:  # 503 when not ready still carries the body
            return json.load(exc)

    def get_json(self, path: str, *, admin_key: bool = True) -> tuple[int, dict]:
        """GET ``path``; with the worker's admin key (``LLMROUTER_ADMIN_KEY`` of its environment) in the
        ``X-Admin-Key`` header when it has one, unless ``admin_key`` is False."""
        key = self._env.get(ADMIN_KEY_ENV) if admin_key else None
        request = urllib.request.Request(f"{self.base_url}{path}", headers={ADMIN_KEY_HEADER: key} if key else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
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
        if self._child is not None:
            self._child.stop(timeout_s)

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to flush, commit or say goodbye."""
        if self._child is not None:
            self._child.kill()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)
