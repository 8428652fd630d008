"""The live provider registry (F001, F051): a provider registered by producing to
the compacted ``llm.providers`` topic takes traffic on a running worker with no
restart; removing it stops its traffic; a bad registration is refused with its
reason on ``llm.events`` and never applied.

The worker here has no provider of its own that can serve (local model
disabled, no API keys), so whatever answers was registered at run time, and
the unconfigured providers show how the chain skips them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import BOOTSTRAP, SimulatorThread, isolated_settings, read_topic_to_end, start_worker

pytestmark = pytest.mark.kafka
LLMROUTER = str(Path(sys.executable).with_name("llmrouter"))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimProfile(latency_ms=2, token_delay_ms=0)) as thread:
        yield thread


@pytest.fixture(scope="module")
def bare_worker(kafka_and_redis: None, tiny_model_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, Path]]:
    """A worker with nothing to serve with until a provider is registered."""
    directory = tmp_path_factory.mktemp("bare-worker")
    settings, path = isolated_settings(directory, tiny_model_dir, local_config={"enabled": False},
                                       registry={"health_check_interval_s": 1},
                                       cache={"enabled": False})  # calls per provider are counted
    proc = start_worker(path, settings, directory / "worker.log", consuming_only=True)
    yield proc, path
    proc.stop()


def cli(settings_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMROUTER_SETTINGS": str(settings_path)}
    return subprocess.run([LLMROUTER, *args], env=env, capture_output=True, text=True, timeout=60)


def wait_for_listing(worker: WorkerProcess, name: str, *, present: bool, timeout_s: float = 15.0) -> float:
    """Seconds until ``name`` is (or is no longer) in the worker's /providers/ view."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        names = {p["name"] for p in worker.get_json("/providers/")[1]["providers"]}
        if (name in names) == present:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{name} still {'absent' if present else 'present'} after {timeout_s}s")


def wait_for_model(worker: WorkerProcess, name: str, model: str, timeout_s: float = 15.0) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        listed = {p["name"]: p for p in worker.get_json("/providers/")[1]["providers"]}
        if name in listed and listed[name]["models"] == [model]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} was not updated to {model} within {timeout_s}s")


async def test_an_unconfigured_provider_is_shown_and_skipped_with_its_reason(bare_worker):
    """No key: /health says which variable to set; a request gets all_providers_unavailable listing why."""
    worker, _ = bare_worker
    providers = worker.health()["providers"]
    assert providers["huggingface"] == {"available": False, "reason": "not configured: no API key (set HF_TOKEN)"}
    assert "OPENAI_API_KEY" in providers["openai"]["reason"]
    async with RouterClient(worker.settings) as client:
        rid = await client.send({"prompt": "anyone?", "max_tokens": 4})
        record = (await client.wait_for([rid], timeout_s=60)).results[rid][0].record
    assert record["status"] == "error" and record["error_code"] == "all_providers_unavailable"
    skipped = {a["provider"]: a["error"] for a in record["attempts"]}
    assert skipped["together"] == "not configured: no API key (set TOGETHER_API_KEY)"
    assert all(a["outcome"] == "skipped" for a in record["attempts"])


async def test_a_worker_with_no_provider_is_live_but_not_ready(bare_worker):
    """Liveness and readiness apart: /health/live/ answers 200, /health/ready/ 503 saying why,
    and /health/ (the report) 200 with the same reason."""
    worker, _ = bare_worker
    assert worker.get_json("/health/live/") == (200, {"live": True})
    status, ready = worker.get_json("/health/ready/")
    assert status == 503 and ready == {"ready": False, "not_ready_because": ["no provider is available"]}
    status, report = worker.get_json("/health/")
    assert status == 200 and report["live"] and report["not_ready_because"] == ["no provider is available"]


async def test_a_registered_provider_takes_traffic_and_a_removed_one_stops(bare_worker, sim: SimulatorThread):
    """`providers register` -> listed within seconds -> serves requests over a pool of at most
    max_concurrent connections; registering the name again updates it (new model, new prices);
    `providers remove` -> unlisted -> no more calls reach it. Each change is an event."""
    worker, settings_path = bare_worker
    server = sim.sims[0]
    done = cli(settings_path, "providers", "register", "runtime-sim", "--kind", "openai_compatible",
               "--endpoint", server.base_urls()["openai"], "--api-key-env", "", "--model", "sim-llama",
               "--max-concurrent", "2", "--price-input-per-1k-usd", "0.5", "--price-output-per-1k-usd", "1.0")
    assert done.returncode == 0, done.stderr
    took_s = wait_for_listing(worker, "runtime-sim", present=True)
    assert took_s < 5

    async with RouterClient(worker.settings) as client:
        for _ in range(10):
            rid = await client.send({"prompt": "one two three", "max_tokens": 4})
            record = (await client.wait_for([rid], timeout_s=60)).results[rid][0].record
            assert record["status"] == "ok" and record["provider"] == "runtime-sim"
            assert record["model"] == "sim-llama" and record["cost_usd"] == pytest.approx((3 * 0.5 + 4 * 1.0) / 1000)
    stats = sim.call(server.stats)
    assert stats["requests"]["openai"] == 10
    assert 1 <= stats["connections_opened"] <= 2  # a cold pool: 10 sequential calls reuse its connections

    done = cli(settings_path, "providers", "register", "runtime-sim", "--kind", "openai_compatible",
               "--endpoint", server.base_urls()["openai"], "--api-key-env", "", "--model", "sim-llama-2")
    assert done.returncode == 0, done.stderr
    wait_for_model(worker, "runtime-sim", "sim-llama-2")
    async with RouterClient(worker.settings) as client:
        rid = await client.send({"prompt": "updated?", "max_tokens": 4})
        record = (await client.wait_for([rid], timeout_s=60)).results[rid][0].record
    assert (record["provider"], record["model"], record["cost_usd"]) == ("runtime-sim", "sim-llama-2", 0.0)

    listing = cli(settings_path, "providers", "list")
    assert listing.returncode == 0 and "runtime-sim" in listing.stdout and "available" in listing.stdout

    done = cli(settings_path, "providers", "remove", "runtime-sim")
    assert done.returncode == 0, done.stderr
    wait_for_listing(worker, "runtime-sim", present=False)
    async with RouterClient(worker.settings) as client:
        rid = await client.send({"prompt": "still there?", "max_tokens": 4})
        allow = await client.send({"prompt": "you?", "max_tokens": 4, "providers": ["runtime-sim"]})
        results = (await client.wait_for([rid, allow], timeout_s=60)).results
    assert results[rid][0].record["error_code"] == "all_providers_unavailable"
    assert results[allow][0].record["error_code"] == "unknown_provider"
    assert sim.call(server.stats)["requests"]["openai"] == 11

    events = await read_events(worker, "provider:runtime-sim", count=3)
    assert [e["kind"] for e in events] == ["provider_registered", "provider_updated", "provider_removed"]
    assert events[0]["data"]["endpoint"] == server.base_urls()["openai"] and events[0]["data"]["available"] == "true"


async def test_an_invalid_registration_is_refused_on_llm_events_and_never_applied(bare_worker):
    """A record with a bad kind and endpoint, produced by hand: an event names every problem; the
    provider is not listed. The CLI refuses the same config before producing anything (exit 2)."""
    worker, settings_path = bare_worker
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        await producer.send_and_wait(worker.settings.topic("llm.providers"), json.dumps(
            {"name": "bad-one", "kind": "gemini", "endpoint": "not a url"}).encode(), key=b"bad-one")
    finally:
        await producer.stop()
    (refused,) = await read_events(worker, "provider:bad-one", count=1)
    assert refused["kind"] == "provider_refused"
    assert "kind 'gemini'" in refused["data"]["reason"] and "endpoint 'not a url'" in refused["data"]["reason"]
    assert "bad-one" not in {p["name"] for p in worker.get_json("/providers/")[1]["providers"]}

    done = cli(settings_path, "providers", "register", "bad-two", "--kind", "openai_compatible")
    assert done.returncode == 2 and "needs an endpoint" in done.stderr


async def read_events(worker: WorkerProcess, entity: str, *, count: int, timeout_s: float = 20) -> list[dict]:
    """The events of ``entity`` on llm.events, once there are ``count`` of them (a worker publishes each
    change just after applying it)."""
    settings, codec = worker.settings, Codec()
    deadline = time.monotonic() + timeout_s
    while True:
        seen = await read_topic_to_end(settings.topic("llm.events"), settings.kafka.partitions, want={entity},
                                       timeout_s=max(0.1, deadline - time.monotonic()))
        events = [codec.decode("Event", m.value) for m in seen.get(entity, [])]
        if len(events) >= count or time.monotonic() > deadline:
            return events


def test_a_worker_following_registrations_stops_cleanly_on_sigterm(kafka_and_redis, tiny_model_dir, tmp_path):
    """The registry's topic follower is stopped before its consumer: SIGTERM ends the worker with exit
    code 0 and no crash in its log."""
    settings, path = isolated_settings(tmp_path, tiny_model_dir, local_config={"enabled": False})
    worker = start_worker(path, settings, tmp_path / "worker.log", consuming_only=True)
    worker.stop()
    assert worker.returncode == 0, worker.log_tail()
    assert "crash" not in worker.log_path.read_text().lower()
