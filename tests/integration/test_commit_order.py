"""The committed offset never passes a request whose result is not durable,
whatever order concurrent requests finish in.

One partition: a slow request (a simulated provider that takes seconds) at
the head, then many requests a fast provider answers at once. While the slow
one is in flight the group's committed offset must stay at it; a SIGKILL then
a restart must still answer it. (faust 0.15.3 alone commits past it: its
``_new_offset`` checks nothing while the committed offset is None or 0 and
lets one in-flight message at the head through, faust issue #606.)
"""

from __future__ import annotations

import asyncio
import time

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.simulator import SimProfile
from tests.conftest import (SimulatorThread, committed_offset, isolated_settings, sim_provider,
                            start_worker)

pytestmark = pytest.mark.kafka
FAST_REQUESTS = 60
SLOW_LATENCY_S = 12.0
WATCH_S = 3.5  # several commit intervals (1 s) while the slow request is in flight


@pytest.fixture
def sims():
    with SimulatorThread(SimProfile(latency_ms=SLOW_LATENCY_S * 1000, token_delay_ms=0),
                         SimProfile(latency_ms=1, token_delay_ms=0)) as thread:
        yield thread


@pytest.fixture
def one_partition(sims, kafka_and_redis, tiny_model_dir, tmp_path):
    """A worker's settings with one partition per topic and two simulated providers, slow and fast."""
    slow, fast = sims.sims
    return isolated_settings(
        tmp_path, tiny_model_dir,
        kafka={"request_partitions": 1, "partitions": 1},
        worker={"max_in_flight": 8},
        local_config={"enabled": False},
        providers={"slow": sim_provider(slow, timeout_s=60), "fast": sim_provider(fast)},
        fallback_chain=["slow", "fast"],
    )


async def test_a_slow_request_at_the_head_survives_a_sigkill_after_fast_ones_behind_it_finished(
        sims, one_partition, tmp_path):
    """Slow request first, 60 instant ones behind it in the same partition: the committed
    offset of the accepted topic never passes the slow one while it runs, and after
    SIGKILL and a restart the slow request is answered too."""
    slow, _fast = sims.sims
    settings, path = one_partition
    accepted = settings.topic("llm.router.accepted.normal")
    first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
    async with RouterClient(settings) as client:
        slow_id = await client.send({"prompt": "take your time", "max_tokens": 4, "providers": ["slow"]})
        fast_ids = [await client.send({"prompt": f"quick {i}", "max_tokens": 4, "providers": ["fast"]})
                    for i in range(FAST_REQUESTS)]
        await client.wait_for(fast_ids, timeout_s=60)
        assert slow_id not in client.collected.results, "the slow request finished before the kill"

        highest = None
        watch_until = time.monotonic() + WATCH_S
        while time.monotonic() < watch_until:
            offset = await committed_offset(settings.worker.app_id, accepted)
            highest = offset if highest is None or offset > highest else highest
            await asyncio.sleep(0.25)
        assert sims.call(slow.stats)["requests"]["openai"] == 1, "the slow call is no longer in flight"
        first.kill()
        assert highest in (-1, 0), f"the group committed offset {highest}: past the slow request at offset 0"

        second = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-2.log")
        try:
            collected = await client.wait_for([slow_id], timeout_s=SLOW_LATENCY_S + 40)
        finally:
            second.stop()
    (result, *_) = collected.results[slow_id]
    assert result.record["status"] == "ok" and result.record["provider"] == "slow"
