"""A result that cannot be written is retried, then dead-lettered, and the request is
answered after recovery: not lost, and not paid for twice.

The request's reply_to topic is deleted while its provider call is under way, so
the result send fails (the producer times out waiting for the topic). The worker
tries ``worker.write_attempts`` times, then writes a dead letter with the upstream
bytes and an ``error``/``delivery_failed`` result on llm.results, and acks. Once
the topic is back, replaying the dead letter re-emits the stored answer (as the
first copy: it was never delivered) without calling the provider again.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from llmrouter.wire.client import RouterClient
from llmrouter.simulator import SimProfile
from tests.conftest import BOOTSTRAP, SimulatorThread, isolated_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka
CALL_S = 2.0


@pytest.fixture
def sim():
    with SimulatorThread(SimProfile(latency_ms=CALL_S * 1000, token_delay_ms=0)) as thread:
        yield thread


@pytest.fixture
def short_writes(sim, kafka_and_redis, tiny_model_dir, tmp_path):
    """A worker whose Kafka writes give up after 2 s, twice."""
    return isolated_settings(
        tmp_path, tiny_model_dir, worker={"producer_timeout_s": 2, "write_attempts": 2},
        local_config={"enabled": False}, providers={"slow": sim_provider(sim.sims[0])}, fallback_chain=["slow"])


async def create_topic(name: str, timeout_s: float = 30.0) -> None:
    """Create ``name``, waiting out a deletion of the same name still under way."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            response = await admin.create_topics([NewTopic(name, 1, 1)])
            codes = [error[1] for error in getattr(response, "topic_errors", getattr(response, "topic_error_codes", []))]
            if all(code == 0 for code in codes):
                return
            assert time.monotonic() < deadline, f"could not create {name}: {response}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def delete_topic(name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def test_a_result_topic_deleted_mid_call_ends_in_a_dead_letter_and_a_replay_delivers_it(
        sim, short_writes, tmp_path):
    """Delete reply_to during the call: error result `delivery_failed` + dead letter with the
    original bytes; recreate the topic and replay: the stored answer arrives, first copy, one call."""
    settings, path = short_writes
    reply_topic = settings.topic(f"llm.replies.doomed-{uuid.uuid4().hex[:6]}")
    await create_topic(reply_topic)
    worker = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker.log")
    try:
        async with RouterClient(settings) as client:
            rid = await client.send({"prompt": "answer me somewhere", "max_tokens": 4, "reply_to": reply_topic})
            deadline = time.monotonic() + 30
            while sim.call(sim.sims[0].stats)["requests"]["openai"] < 1:
                assert time.monotonic() < deadline, "the provider was never called"
                await asyncio.sleep(0.05)
            await delete_topic(reply_topic)
            collected = await client.wait_for([rid], timeout_s=60, dead_letters=1)
            (error,) = collected.results[rid]
            assert (error.record["status"], error.record["error_code"]) == ("error", "delivery_failed")
            assert reply_topic in error.record["error_message"]
            (letter,) = [d for d in collected.dead_letters if d["request_id"] == rid]
            assert letter["error_code"] == "delivery_failed"
            assert letter["source_topic"] == settings.topic("llm.requests.normal")

            await create_topic(reply_topic)
            async with RouterClient(settings, results_topic=reply_topic) as replies:
                await client.send_raw(letter["original_value"], priority="normal", key=letter["original_key"])
                answered = await replies.wait_for([rid], timeout_s=60)
        (result,) = answered.results[rid]
        assert result.record["status"] == "ok" and result.record["provider"] == "slow"
        assert not result.replay, "the first delivered copy must not carry the replay header"
        assert sim.call(sim.sims[0].stats)["requests"]["openai"] == 1, "the provider was paid twice"
        assert worker.metric("llmrouter_dlq_total", code="delivery_failed") == 1
    finally:
        worker.stop()
        try:
            await delete_topic(reply_topic)
        except KafkaError:
            pass
