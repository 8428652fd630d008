"""Every final outcome is idempotent, errors included (issue 19, item 7).

A request whose provider fails ends in an ``error`` result and a dead letter.
Delivered again with the same request_id (an upstream duplicate, a redelivery
after a crash), it gets the stored result back, byte for byte and flagged as
a replay, and the provider is not called again. A replay of its dead letter
(``llmrouter dlq replay``) is the operator asking for a new try on purpose:
that one calls the provider again.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from llmrouter.commands.cli import main as cli_main
from llmrouter.simulator import SimProfile
from llmrouter.wire.client import RouterClient
from tests.conftest import SimulatorThread, isolated_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka


@pytest.fixture
def failing_sim():
    """A provider refusing every call with a 401: not retriable, and the chain has no other provider."""
    profile = SimProfile(latency_ms=5, token_delay_ms=0, error_rate=1.0, fault_weights={"auth_error": 1.0})
    with SimulatorThread(profile) as thread:
        yield thread


def calls(sim: SimulatorThread) -> int:
    return sim.call(sim.sims[0].stats)["requests"]["openai"]


async def wait_for_results(client: RouterClient, rid: str, count: int, timeout_s: float = 60.0) -> list:
    deadline = time.monotonic() + timeout_s
    while len(client.collected.results.get(rid, [])) < count:
        assert time.monotonic() < deadline, f"{rid}: {len(client.collected.results.get(rid, []))} results, want {count}"
        await client.poll(0.2)
    return client.collected.results[rid]


async def test_an_error_result_is_stored_re_emitted_to_a_duplicate_and_retried_by_a_dlq_replay(
        failing_sim, kafka_and_redis, tiny_model_dir, tmp_path):
    settings, path = await asyncio.to_thread(
        isolated_settings, tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
        providers={"failing": sim_provider(failing_sim.sims[0], timeout_s=10)}, fallback_chain=["failing"])
    worker = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker.log")
    try:
        async with RouterClient(settings) as client:
            request = {"request_id": str(uuid.uuid4()), "created_at_ms": int(time.time() * 1000), "prompt": "fails",
                       "max_tokens": 4}
            rid = await client.send(dict(request))
            (first,) = await wait_for_results(client, rid, 1)
            assert first.record["status"] == "error" and not first.replay, first.record
            assert calls(failing_sim) == 1

            await client.send(dict(request))  # the same request again
            second = (await wait_for_results(client, rid, 2))[1]
            assert second.replay, "the duplicate's result lacks the replay header"
            assert second.raw == first.raw, "the duplicate got a different result, not the stored one"
            assert calls(failing_sim) == 1, "the duplicate called the provider again"

            code = await asyncio.to_thread(cli_main, ["--settings", str(path), "dlq", "replay", "--request-id", rid,
                                                      "--fresh-deadline"])
            assert code == 0
            third = (await wait_for_results(client, rid, 3))[2]
            assert not third.replay and third.record["status"] == "error", third.record
            assert calls(failing_sim) == 2, "a DLQ replay is a new try on purpose: it calls again"
    finally:
        await asyncio.to_thread(worker.stop)
