"""Fixtures shared by every level of tests: the tiny model (built once per
session) and workers of their own against the real broker and Redis.

Kafka and Redis are the ones ``llmrouter infra up`` starts (CI starts them
first; the ``kafka_and_redis`` fixture makes sure). Each worker gets its own
topic prefix, app id, data dir and web port, so tests never see each other's
messages.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from llmrouter import infra
from llmrouter.config.secrets import ADMIN_KEY_ENV
from llmrouter.config.settings import Settings, load_settings
from llmrouter.simulator import SimProfile, Simulator
from llmrouter.testing.ports import free_port
from llmrouter.testing.settings_file import BOOTSTRAP, REDIS_URL, merge_sections, write_worker_settings
from llmrouter.testing.topics import delete_topics
from llmrouter.testing.worker_process import WorkerProcess, isolated_env

from llmrouter.localmodel.build_tiny import build_tiny_model
from llmrouter.localmodel.quantize import quantize_model

TEST_ADMIN_KEY = "test-admin-key-0"  # every test worker's admin key, unless its test sets another


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


@pytest.fixture(scope="session")
def kafka_and_redis() -> None:
    """The shared broker and Redis are up (started once if nothing answers)."""
    infra.up(bootstrap=BOOTSTRAP, redis_url=REDIS_URL, echo=lambda _line: None)


_TEST_TOPIC_PREFIXES: list[str] = []  # topics (and faust's internal ones) the session made, deleted at its end


@pytest.fixture(scope="session", autouse=True)
def delete_test_topics():
    """Delete every topic the session's workers made, so a broker kept running across
    `make test` runs does not pile up thousands of partitions (its heap is bounded)."""
    yield
    delete_topics(_TEST_TOPIC_PREFIXES)


def isolated_settings(directory: Path, model_dir: Path, **sections: dict) -> tuple[Settings, Path]:
    """Settings of a worker of its own: fresh topic prefix, app id, datadir and web port."""
    name = uuid.uuid4().hex[:10]
    _TEST_TOPIC_PREFIXES.extend([f"t{name}.", f"llmrouter-test-{name}-"])
    test_defaults = {
        "kafka": {"request_partitions": 2, "partitions": 2},
        "worker": {"max_in_flight": 4},
        "local_config": {"model_path": str(model_dir), "quantization": "none", "inference_threads": 1},
    }
    return write_worker_settings(directory, topic_prefix=f"t{name}.", app_id=f"llmrouter-test-{name}",
                                 sections=merge_sections(test_defaults, sections))


def sibling_settings(settings: Settings, path: Path, directory: Path) -> tuple[Settings, Path]:
    """The same worker settings (same group and topics) with a web port and a data dir of its own."""
    directory.mkdir()
    data = yaml.safe_load(path.read_text())
    data["worker"].update(web_port=free_port(), datadir=str(directory / "worker"))
    sibling_path = directory / "settings.yaml"
    sibling_path.write_text(yaml.safe_dump(data))
    return load_settings(sibling_path, env={}), sibling_path


def sim_provider(sim: Simulator, *, timeout_s: float = 10.0, max_concurrent: int = 8, **fields: Any) -> dict:
    """Settings of an OpenAI-compatible provider (no key) served by the simulator ``sim``."""
    return {"kind": "openai_compatible", "endpoint": sim.base_urls()["openai"], "api_key_env": "",
            "models": ["sim-model"], "timeout_s": timeout_s, "max_concurrent": max_concurrent, **fields}


def start_worker(settings_path: Path, settings: Settings, log_path: Path, *, consuming_only: bool = False,
                 env: dict[str, str] | None = None) -> WorkerProcess:
    """A worker in a child process, started and ready (see :func:`worker_process`)."""
    worker = worker_process(settings_path, settings, log_path, env=env).start()
    worker.wait_ready(consuming_only=consuming_only)
    return worker


def worker_process(settings_path: Path, settings: Settings, log_path: Path, *,
                   env: dict[str, str] | None = None) -> WorkerProcess:
    """A worker not started yet; API keys only from ``env`` (a developer's own keys never leak into tests).
    It has the admin key :data:`TEST_ADMIN_KEY` unless ``env`` sets another (``""``: none), and
    :meth:`WorkerProcess.get_json` sends it, so tests read /ledger/ and /requests/{id}/ as an operator would."""
    return WorkerProcess(settings, log_path=log_path, env=isolated_env(settings_path, {ADMIN_KEY_ENV: TEST_ADMIN_KEY,
                                                                                       **(env or {})}))


class SimulatorThread:
    """Provider simulators served by an event loop in a thread of their own, so that
    blocking test helpers (a worker's start, its web views) never stall them."""

    def __init__(self, *profiles: SimProfile) -> None:
        self._profiles = profiles
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulators", daemon=True)
        self.sims: list[Simulator] = []

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        self.sims = [Simulator(profile) for profile in self._profiles]
        for sim in self.sims:
            self.run(sim.start("127.0.0.1", 0))
        return self

    def __exit__(self, *exc: object) -> None:
        for sim in self.sims:
            self.run(sim.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the simulators' loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def call(self, fn: Any, *args: Any) -> Any:
        """Call a simulator method on its loop (scripts, stats, profile updates)."""
        async def call() -> Any:
            return fn(*args)
        return self.run(call())


async def wait_for_log(path: Path, line: str, timeout_s: float = 60.0) -> None:
    """Wait until the log file at ``path`` holds ``line``."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and line in path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{path.name} never said {line!r}"
        await asyncio.sleep(0.05)


async def joining_sibling(settings: Settings, path: Path, directory: Path) -> WorkerProcess:
    """A second worker of the same group (:func:`sibling_settings` in ``directory``), its process started, once
    its log says faust is starting: it joins the group a few seconds later (the import takes longer)."""
    sibling, sibling_path = sibling_settings(settings, path, directory)
    worker = worker_process(sibling_path, sibling, directory / "worker.log").start()
    await wait_for_log(directory / "worker.log", "[^Worker]: Starting...")
    return worker


async def stop_all(*workers: WorkerProcess | None) -> None:
    """Stop each worker that was started, in the order given."""
    for worker in workers:
        if worker is not None:
            await asyncio.to_thread(worker.stop)


async def committed_offsets(group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The group's committed offset of each partition (-1: none), as Kafka's admin API gives them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in
                (await admin.list_consumer_group_offsets(group, partitions=partitions)).items()}
    finally:
        await admin.close()


async def committed_offset(group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset of one partition (-1: none)."""
    tp = TopicPartition(topic, partition)
    return (await committed_offsets(group, [tp])).get(tp, -1)


async def read_topic_to_end(topic: str, partition_count: int, *, want: set[str], timeout_s: float = 60.0) -> dict[str, list]:
    """Read ``topic`` from the beginning until every key in ``want`` was seen, then to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: dict[str, list] = {}
        deadline = time.monotonic() + timeout_s
        while not want <= seen.keys() and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    seen.setdefault(m.key.decode() if m.key else "", []).append(m)
        end = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    seen.setdefault(m.key.decode() if m.key else "", []).append(m)
        return seen
    finally:
        await consumer.stop()


async def read_configs(names: list[str]) -> dict[str, dict[str, tuple[str, int]]]:
    """topic -> config -> (value, config_source), read back with describe_configs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    return {name: {e[0]: (e[1], e[3]) for e in entries}
            for response in responses for _code, _msg, _type, name, entries in response.resources}
