"""Rebalances and graceful stops never pay a provider twice.

A simulated provider that takes a few seconds per call, requests in flight on
a worker, then either a second worker joins the group (every partition is
revoked and reassigned) or the worker is stopped with SIGTERM and started
again. The simulator counts the calls it received: exactly one per request;
and every request has exactly one result without the replay header.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from llmrouter.wire.client import Collected, RouterClient
from llmrouter.simulator import SimProfile
from tests.conftest import SimulatorThread, isolated_settings, sibling_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka
REQUESTS = 16
CALL_S = 2.5


@pytest.fixture
def sim():
    with SimulatorThread(SimProfile(latency_ms=CALL_S * 1000, token_delay_ms=0)) as thread:
        yield thread


@pytest.fixture
def slow_provider_settings(sim, kafka_and_redis, tiny_model_dir, tmp_path):
    """Two partitions per topic, one simulated provider taking CALL_S per call."""
    return isolated_settings(
        tmp_path, tiny_model_dir,
        worker={"max_in_flight": 4},
        limits={"default_timeout_s": 300},
        local_config={"enabled": False},
        cache={"enabled": False},  # provider calls are what is counted: a cache hit must not hide a second one
        providers={"slow": sim_provider(sim.sims[0], timeout_s=30)},
        fallback_chain=["slow"],
    )


def calls_received(sim: SimulatorThread) -> int:
    return sim.call(sim.sims[0].stats)["requests"]["openai"]


async def wait_for_calls(sim: SimulatorThread, at_least: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while calls_received(sim) < at_least:
        assert time.monotonic() < deadline, f"the provider saw {calls_received(sim)} calls, want {at_least}"
        await asyncio.sleep(0.05)


def assert_answered_once_each(collected: Collected, ids: list[str]) -> None:
    for rid in ids:
        firsts = [r for r in collected.results[rid] if not r.replay]
        assert len(firsts) == 1, f"{rid}: {len(firsts)} results without the replay header"
        assert firsts[0].record["status"] == "ok", firsts[0].record


async def test_a_worker_joining_mid_call_does_not_make_anyone_call_the_provider_again(
        sim, slow_provider_settings, tmp_path):
    """Calls in flight when the group rebalances finish on the old owner within the grace
    period and are committed; requests not yet dispatched go to whoever owns them next.
    The provider sees one call per request."""
    settings, path = slow_provider_settings
    first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
    second = None
    async with RouterClient(settings) as client:
        try:
            ids = [await client.send({"prompt": f"slow {i}", "max_tokens": 4}) for i in range(REQUESTS)]
            await wait_for_calls(sim, 4)  # max_in_flight calls under way, the rest queued
            second_settings, second_path = sibling_settings(settings, path, tmp_path / "second")
            second = await asyncio.to_thread(start_worker, second_path, second_settings, tmp_path / "worker-2.log",
                                             consuming_only=True)
            await client.wait_for(ids, timeout_s=120)
        finally:
            for worker in (second, first):
                if worker is not None:
                    await asyncio.to_thread(worker.stop)
        await client.read_to_end()  # both workers are gone: whatever they sent is in the topic now
    assert_answered_once_each(client.collected, ids)
    assert calls_received(sim) == REQUESTS


async def test_a_graceful_stop_mid_call_does_not_make_the_next_worker_call_again(sim, slow_provider_settings, tmp_path):
    """SIGTERM while calls are in flight: they finish and are committed before the worker
    exits (within the grace period); queued requests are left to the next worker."""
    settings, path = slow_provider_settings
    first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
    async with RouterClient(settings) as client:
        ids = [await client.send({"prompt": f"slow {i}", "max_tokens": 4}) for i in range(REQUESTS)]
        await wait_for_calls(sim, 4)
        await asyncio.to_thread(first.stop)
        assert first.returncode == 0, first.log_tail()
        second = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-2.log")
        try:
            await client.wait_for(ids, timeout_s=120)
        finally:
            await asyncio.to_thread(second.stop)
        await client.read_to_end()
    assert_answered_once_each(client.collected, ids)
    assert calls_received(sim) == REQUESTS


async def test_a_request_cancelled_while_queued_is_answered_after_a_restart_though_a_later_one_finished(
        kafka_and_redis, tiny_model_dir, tmp_path):
    """One partition: r0 and r1 for a provider that takes one call at a time, r2 for another.
    SIGTERM while r0 and r2 are at their providers and r1 waits for its slot: r0 and r2
    finish and are committed, r1 is cancelled unpaid, and the commit stays at r1 (faust's
    own tracking forgets a message nothing refers to any more), so the next worker answers it."""
    with SimulatorThread(SimProfile(latency_ms=3000, token_delay_ms=0),
                         SimProfile(latency_ms=2000, token_delay_ms=0)) as sims:
        one_at_a_time, other = sims.sims
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, kafka={"request_partitions": 1, "partitions": 1},
            local_config={"enabled": False}, fallback_chain=["single", "other"],
            providers={"single": sim_provider(one_at_a_time, timeout_s=30, max_concurrent=1),
                       "other": sim_provider(other, timeout_s=30)})

        def calls(sim) -> int:
            return sims.call(sim.stats)["requests"]["openai"]

        first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
        async with RouterClient(settings) as client:
            ids = [await client.send({"prompt": f"r{i}", "max_tokens": 4, "providers": [provider]})
                   for i, provider in enumerate(("single", "single", "other"))]
            deadline = time.monotonic() + 30
            while calls(one_at_a_time) < 1 or calls(other) < 1:
                assert time.monotonic() < deadline, "r0 and r2 never reached their providers"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(first.stop)
            assert first.returncode == 0, first.log_tail()
            await client.read_to_end()
            assert set(client.collected.results) == {ids[0], ids[2]}, "r0 and r2 finish within the grace period"
            second = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-2.log")
            try:
                await client.wait_for(ids, timeout_s=60)
            finally:
                await asyncio.to_thread(second.stop)
            await client.read_to_end()
        assert_answered_once_each(client.collected, ids)
        assert (calls(one_at_a_time), calls(other)) == (2, 1)
