"""Critical is never starved: at the local model, a critical request overtakes the
backlog of low ones waiting for the same provider."""

from __future__ import annotations

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.localmodel.build_tiny import build_tiny_model
from tests.conftest import isolated_settings, start_worker

pytestmark = pytest.mark.kafka
LOW_REQUESTS = 40


@pytest.fixture(scope="module")
def slower_model_dir(tmp_path_factory):
    """A tiny model big enough that one answer takes a noticeable time (about 0.1 s)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "slower", layers=4, hidden=512, heads=8,
                            kv_heads=4, intermediate=1024, vocab_size=2048)


@pytest.fixture
def busy_worker(kafka_and_redis, slower_model_dir, tmp_path):
    settings, path = isolated_settings(tmp_path, slower_model_dir, worker={"max_in_flight": 8},
                                       limits={"default_timeout_s": 600}, llm_config={"local": {
                                           "max_concurrent": 1, "timeout": 600}})
    worker = start_worker(path, settings, tmp_path / "worker.log")
    yield worker
    worker.stop()


async def test_a_critical_request_overtakes_the_low_backlog_at_the_local_model(busy_worker):
    """With 8 low requests waiting for the one local-model slot, a critical request sent
    now is answered after at most the low one running and those already done, not after
    the whole waiting line."""
    async with RouterClient(busy_worker.settings) as client:
        lows = [await client.send({"prompt": f"low {i}", "max_tokens": 64}, priority="low")
                for i in range(LOW_REQUESTS)]
        await client.wait_for(lows[:2], timeout_s=60)  # the backlog is being worked off
        done_at_send = len(client.collected.results)
        critical = await client.send({"prompt": "urgent", "max_tokens": 8}, priority="critical")
        await client.wait_for([critical], timeout_s=60)
        arrival = list(client.collected.results)
        lows_answered_meanwhile = arrival.index(critical) - done_at_send
        await client.wait_for(lows, timeout_s=120)
    assert lows_answered_meanwhile <= 3, f"{lows_answered_meanwhile} low requests went first"
    assert arrival.index(critical) < len(lows) - 8  # it did not wait for the line to clear
