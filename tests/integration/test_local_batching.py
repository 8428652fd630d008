"""Dynamic batching of the local model through the real dataflow: requests into
Kafka, one worker (a child process) batching them on the tiny ONNX model,
results out of Kafka, and the batches read from the worker's ``/providers/``
view, as an operator would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationRequest, LocalModel
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import SimulatorThread, isolated_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka


def local_batching(worker: WorkerProcess) -> dict:
    """The local provider's batching figures as ``/providers/`` shows them."""
    status, body = worker.get_json("/providers/")
    assert status == 200
    return next(p for p in body["providers"] if p["name"] == "local")["batching"]


def poll(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Check ``condition`` every 0.1 s until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s"
        time.sleep(0.1)


@pytest.fixture
def batching_worker(kafka_and_redis: None, tiny_model_dir: Path, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker whose local model batches up to four requests, waiting up to 3 s for a batch to fill."""
    settings, path = isolated_settings(
        tmp_path, tiny_model_dir, fallback_chain=["local"], worker={"max_in_flight": 8},
        local_config={"batch_size": 4, "batching": "throughput", "max_batch_wait_ms": 3000},
        registry={"health_check_interval_s": 3600})
    worker = start_worker(path, settings, tmp_path / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture
def standby() -> Iterator[SimulatorThread]:
    """A simulated OpenAI-compatible server: the provider after the local model in the chain."""
    with SimulatorThread(SimProfile(latency_ms=1, token_delay_ms=0)) as sims:
        yield sims


@pytest.fixture
def overflowing_worker(kafka_and_redis: None, tiny_model_dir: Path, tmp_path: Path,
                       standby: SimulatorThread) -> Iterator[WorkerProcess]:
    """A worker whose local model runs one request at a time with no queue, then the standby."""
    settings, path = isolated_settings(
        tmp_path, tiny_model_dir, fallback_chain=["local", "standby"], worker={"max_in_flight": 8},
        providers={"standby": sim_provider(standby.sims[0])},
        local_config={"batch_size": 1, "batching": "latency", "max_queue": 0},
        registry={"health_check_interval_s": 3600})
    worker = start_worker(path, settings, tmp_path / "worker.log")
    yield worker
    worker.stop()


async def test_concurrent_requests_are_served_in_one_batch_with_their_lone_answers(
        batching_worker: WorkerProcess, tiny_model_dir: Path) -> None:
    """Four requests sent together to a worker with batch_size 4 (throughput mode, up to 3 s to fill) run as
    one batch of four, seen on /providers/, and each result is the text the model gives that prompt alone."""
    poll(lambda: local_batching(batching_worker)["batches"] >= 1, "the start-up health check's one-token batch")
    before = local_batching(batching_worker)["sizes"]
    prompts = [f"batched request {i} about kafka streams" for i in range(4)]
    async with RouterClient(batching_worker.settings) as client:
        ids = [await client.send({"prompt": p, "max_tokens": 12 + i}) for i, p in enumerate(prompts)]
        collected = await client.wait_for(ids, timeout_s=60)
    records = [collected.results[rid][0].record for rid in ids]
    after = local_batching(batching_worker)
    assert after["sizes"].get("4", 0) == before.get("4", 0) + 1 and after["largest"] == 4
    assert after["reasons"].get("full") == 1
    model = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none"))
    alone = [model.generate(GenerationRequest(prompt=p, max_tokens=12 + i)) for i, p in enumerate(prompts)]
    assert [(r["status"], r["provider"]) for r in records] == [("ok", "local")] * 4
    assert [r["text"] for r in records] == [a.text for a in alone]


async def test_overflow_goes_on_to_the_next_provider(overflowing_worker: WorkerProcess) -> None:
    """max_queue 0 and one batch at a time: of eight long requests sent together, those that find the
    model busy are refused by it at once (attempt 'overloaded', never retried on it) and answered by the
    next provider; every request gets exactly one ok result, and /providers/ counts the refusals."""
    async with RouterClient(overflowing_worker.settings) as client:
        ids = [await client.send({"prompt": f"long request {i}", "max_tokens": 250}) for i in range(8)]  # simple: local first
        collected = await client.wait_for(ids, timeout_s=60)
        await client.read_to_end()
    refused = local_batching(overflowing_worker)["refused"].get("queue_full", 0)
    records = [collected.results[rid] for rid in ids]
    assert all(len(r) == 1 and r[0].record["status"] == "ok" for r in records)
    sent_on = [r[0].record for r in records if r[0].record["provider"] == "standby"]
    assert sent_on, "no request overflowed: the model was never busy"
    for record in sent_on:
        assert [(a["provider"], a["outcome"], a["error_code"]) for a in record["attempts"]] == [
            ("local", "error", "overloaded"), ("standby", "ok", None)]
    assert refused == len(sent_on)
