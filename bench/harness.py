"""What the benchmarks share: a worker of their own against the shared broker and Redis.

Each benchmark's worker gets a topic prefix, app id, web port and data dir of
its own (so benchmarks and tests never see each other's messages), runs in a
child process whose environment carries only the API keys the benchmark
gives it (a developer's own keys are never passed), and its topics are
deleted afterwards (a broker kept running must not pile up partitions).

Imported by the scripts beside it (``python bench/<script>.py`` puts this
folder on the path).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient

from llmrouter.runtime.kafka_admin import ensure_topics
from llmrouter.providers.spec import DEFAULT_KEY_ENV
from llmrouter.config.settings import Settings, load_settings
from llmrouter.testing.worker_process import WorkerProcess

BOOTSTRAP = "127.0.0.1:9092"
REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_settings(directory: Path, **sections: dict[str, Any] | list[Any]) -> tuple[Settings, Path]:
    """Settings of a worker of its own, ``sections`` merged over them; written to ``directory``, topics created."""
    name = uuid.uuid4().hex[:10]
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": BOOTSTRAP, "topic_prefix": f"bench{name}."},
        "redis": {"url": REDIS_URL},
        "worker": {"app_id": f"llmrouter-bench-{name}", "datadir": str(directory / "worker"), "web_port": free_port()},
        # the providers' own limits (Hugging Face: 50/hour) would send most calls elsewhere; the tests of the
        # rate limits turn them on with limits of their own
        "rate_limits": {"enabled": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    path = directory / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = load_settings(path, env={})
    asyncio.run(ensure_topics(settings))
    return settings, path


def start_worker(settings: Settings, path: Path, directory: Path, *, keys: dict[str, str] | None = None,
                 ready_timeout_s: float = 120.0) -> WorkerProcess:
    """A worker child process, ready; ``keys`` are the only API keys in its environment."""
    hidden = set(DEFAULT_KEY_ENV.values()) | {"LLMROUTER_SECRETS_FILE"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTER") and k not in hidden}
    env |= {"LLMROUTER_SETTINGS": str(path), **(keys or {})}
    worker = WorkerProcess(settings, log_path=directory / "worker.log", env=env).start()
    try:
        worker.wait_ready(ready_timeout_s)
    except BaseException:
        worker.stop()
        raise
    return worker


def delete_topics(settings: Settings) -> None:
    """Delete the worker's topics (its prefix) and faust's internal ones (its app id)."""
    asyncio.run(_delete_topics((settings.kafka.topic_prefix, f"{settings.worker.app_id}-")))


async def _delete_topics(prefixes: tuple[str, ...]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=30000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        for i in range(0, len(names), 100):
            await admin.delete_topics(names[i:i + 100])
    except Exception as exc:  # cleanup only: a benchmark's figures stand without it
        print(f"could not delete the benchmark's topics: {exc!r}")
    finally:
        await admin.close()
