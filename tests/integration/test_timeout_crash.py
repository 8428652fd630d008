"""SIGKILL right after requests timed out: one result and one provider call per request (issue 19, item 7).

Every call times out (the provider takes 2 s, its timeout is 0.5 s, no retry). The worker is killed as soon
as every ``timeout`` result is out, inside the commit interval, so some of those requests are delivered
again to the next worker. Their timeout results are stored like any outcome: the next worker re-emits them,
byte for byte, and calls the provider for none of them again.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from llmrouter.simulator import SimProfile
from llmrouter.testing.settings_file import BOOTSTRAP
from llmrouter.topics import ACCEPTED
from llmrouter.wire.client import RouterClient
from tests.conftest import SimulatorThread, isolated_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka
REQUESTS = 8


@pytest.fixture
def hanging_sim():
    with SimulatorThread(SimProfile(latency_ms=2000, token_delay_ms=0)) as thread:
        yield thread


def calls(sim: SimulatorThread) -> int:
    return sim.call(sim.sims[0].stats)["requests"]["openai"]


async def wait_committed_to_end(settings, timeout_s: float = 60.0) -> None:
    """Until the group's commit on the accepted topic reaches its end: every request there is done."""
    topic = settings.topic(ACCEPTED.format(priority="normal"))
    partitions = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await consumer.start()
    await admin.start()
    try:
        end = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(settings.worker.app_id, partitions=partitions)
            behind = {tp: (committed[tp].offset if tp in committed else None, end[tp]) for tp in partitions
                      if end[tp] and (tp not in committed or committed[tp].offset < end[tp])}
            if not behind:
                return
            assert time.monotonic() < deadline, f"the commit never reached the end: {behind}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
        await consumer.stop()


async def test_timed_out_requests_delivered_again_after_a_sigkill_are_re_emitted_not_called_again(
        hanging_sim, kafka_and_redis, tiny_model_dir, tmp_path):
    settings, path = await asyncio.to_thread(
        isolated_settings, tmp_path, tiny_model_dir, worker={"max_in_flight": REQUESTS},
        limits={"default_timeout_s": 300}, local_config={"enabled": False}, cache={"enabled": False},
        providers={"hanging": sim_provider(hanging_sim.sims[0], timeout_s=0.5, retry_attempts=0)},
        fallback_chain=["hanging"])
    first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
    async with RouterClient(settings) as client:
        try:
            ids = [await client.send({"prompt": f"hangs {i}", "max_tokens": 4}) for i in range(REQUESTS)]
            await client.wait_for(ids, timeout_s=60)
        finally:
            first.kill()  # at once: within the commit interval (1 s) of the last results
        before = {rid: client.collected.results[rid][0] for rid in ids}
        assert {r.record["status"] for r in before.values()} == {"timeout"}
        assert calls(hanging_sim) == REQUESTS
        second = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-2.log")
        try:
            await wait_committed_to_end(settings)
        finally:
            await asyncio.to_thread(second.stop)
        await client.read_to_end()
    again = [rid for rid in ids if len(client.collected.results[rid]) > 1]
    assert again, "no request was delivered again after the kill: the test proves nothing"
    for rid in ids:
        assert {r.raw for r in client.collected.results[rid]} == {before[rid].raw}, f"{rid} got a second result"
    assert calls(hanging_sim) == REQUESTS, "a request delivered again called the provider again"
