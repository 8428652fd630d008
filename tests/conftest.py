"""Fixtures shared by every level of tests: the tiny model (built once per
session) and workers of their own against the real broker and Redis.

Kafka and Redis are the ones ``llmrouter infra up`` starts (CI starts them
first; the ``kafka_and_redis`` fixture makes sure). Each worker gets its own
topic prefix, app id, data dir and web port, so tests never see each other's
messages.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

import pytest
import yaml

from llmrouter import infra
from llmrouter.kafka_admin import ensure_topics
from llmrouter.settings import Settings, load_settings
from llmrouter.workerproc import WorkerProcess

from llmrouter.localmodel.build_tiny import build_tiny_model
from llmrouter.localmodel.quantize import quantize_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2-layer Llama (fp32) with the Optimum export's I/O, built in a temp dir."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_int8_dir(tiny_model_dir: Path) -> Path:
    """The tiny model quantized to int8 by ``quantize_model``, in a sibling directory."""
    target = tiny_model_dir.parent / "tiny-llama-int8"
    quantize_model(tiny_model_dir, target, progress=lambda _line: None)
    return target


BOOTSTRAP = "127.0.0.1:9092"
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def kafka_and_redis() -> None:
    """The shared broker and Redis are up (started once if nothing answers)."""
    infra.up(bootstrap=BOOTSTRAP, redis_url=REDIS_URL, echo=lambda _line: None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_settings(directory: Path, model_dir: Path, **sections: dict) -> tuple[Settings, Path]:
    """Settings of a worker of its own: fresh topic prefix, app id, datadir and web port."""
    name = uuid.uuid4().hex[:10]
    data = {
        "kafka": {"bootstrap_servers": BOOTSTRAP, "topic_prefix": f"t{name}.", "request_partitions": 2,
                  "partitions": 2},
        "redis": {"url": REDIS_URL},
        "worker": {"app_id": f"llmrouter-test-{name}", "datadir": str(directory / "worker"),
                   "web_port": free_port(), "max_in_flight": 4},
        "local_config": {"model_path": str(model_dir), "quantization": "none", "inference_threads": 1},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path = directory / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = load_settings(path, env={})
    asyncio.run(ensure_topics(settings))
    return settings, path


def start_worker(settings_path: Path, settings: Settings, log_path: Path, *, consuming_only: bool = False,
                 ) -> WorkerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTER")}
    env["LLMROUTER_SETTINGS"] = str(settings_path)
    worker = WorkerProcess(settings, log_path=log_path, env=env).start()
    worker.wait_ready(consuming_only=consuming_only)
    return worker
