"""What the benchmarks share: a worker of their own against the shared broker and Redis.

Each benchmark's worker gets a topic prefix, app id, web port and data dir of
its own (so benchmarks and tests never see each other's messages; the settings
file is written by :mod:`llmrouter.testing.settings_file`, as the tests' is),
runs in a child process whose environment carries only the API keys the
benchmark gives it (a developer's own keys are never passed), and its topics
are deleted afterwards (a broker kept running must not pile up partitions).

Imported by the scripts beside it (``python bench/<script>.py`` puts this
folder on the path).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Protocol

from llmrouter.config.settings import Settings
from llmrouter.testing import topics
from llmrouter.testing.ports import free_port
from llmrouter.testing.settings_file import BOOTSTRAP, REDIS_URL, write_worker_settings
from llmrouter.testing.worker_process import WorkerProcess, isolated_env

__all__ = ["BOOTSTRAP", "REDIS_URL", "free_port", "worker_settings", "start_worker", "delete_topics", "clean_up"]


def worker_settings(directory: Path, **sections: dict[str, Any] | list[Any]) -> tuple[Settings, Path]:
    """Settings of a worker of its own, ``sections`` merged over them; written to ``directory``, topics created."""
    name = uuid.uuid4().hex[:10]
    return write_worker_settings(directory, topic_prefix=f"bench{name}.", app_id=f"llmrouter-bench-{name}",
                                 sections=sections)


def start_worker(settings: Settings, path: Path, directory: Path, *, keys: dict[str, str] | None = None,
                 ready_timeout_s: float = 120.0) -> WorkerProcess:
    """A worker child process, ready; ``keys`` are the only API keys in its environment."""
    worker = WorkerProcess(settings, log_path=directory / "worker.log", env=isolated_env(path, keys)).start()
    try:
        worker.wait_ready(ready_timeout_s)
    except BaseException:
        worker.stop()
        raise
    return worker


def delete_topics(settings: Settings) -> None:
    """Delete the worker's topics (its prefix) and faust's internal ones (its app id)."""
    topics.delete_topics((settings.kafka.topic_prefix, f"{settings.worker.app_id}-"))


class Stoppable(Protocol):
    def stop(self) -> Any: ...


def clean_up(*, worker: Stoppable | None = None, sim: Stoppable | None = None, settings: Settings | None = None,
             directory: Path | None = None, keep: bool = False) -> None:
    """What every benchmark does at its end, whatever happened: stop the worker, then the simulator, delete the
    worker's topics, and remove ``directory`` (unless ``keep``: then say where it is). ``None`` is skipped."""
    if worker is not None:
        worker.stop()
    if sim is not None:
        sim.stop()
    if settings is not None:
        delete_topics(settings)
    if directory is not None and keep:
        print(f"kept {directory}")
    elif directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
