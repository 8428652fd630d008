"""A local model over max_memory is refused, and the worker says so instead of crashing."""

from __future__ import annotations

import pytest

from llmrouter.wire.client import RouterClient
from tests.conftest import isolated_settings, start_worker

pytestmark = pytest.mark.kafka


@pytest.fixture
def starved_worker(kafka_and_redis, tiny_model_dir, tmp_path):
    settings, path = isolated_settings(tmp_path, tiny_model_dir, local_config={"max_memory": "1MB"})
    worker = start_worker(path, settings, tmp_path / "worker.log", consuming_only=True)
    yield worker
    worker.stop()


async def test_a_model_over_max_memory_is_refused_and_requests_get_a_clear_error(starved_worker):
    """max_memory 1MB: the model is not loaded, /health says why and is not ready, and a
    request gets `error` all_providers_unavailable naming max_memory, not a hang or a crash."""
    health = starved_worker.health()
    assert health["ready"] is False and health["live"] is True
    reason = health["providers"]["local"]["reason"]
    assert "model not loaded" in reason and "max_memory" in reason
    async with RouterClient(starved_worker.settings) as client:
        rid = await client.send({"prompt": "anyone home?", "max_tokens": 4}, priority="high")
        collected = await client.wait_for([rid], timeout_s=60)
    record = collected.results[rid][0].record
    assert (record["status"], record["error_code"]) == ("error", "all_providers_unavailable")
    assert "max_memory" in record["error_message"]
