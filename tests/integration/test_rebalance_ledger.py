"""A rebalance that cuts provider calls off still books every call the provider may have billed
(issue 19, item 6).

The provider takes 15 s per call and a second worker joins a few seconds in; the drain lets calls under way finish for ``revoke_grace_s`` (8 s),
then cancels them, and the partitions' next owner calls again. The first call's reservation, never
settled, is booked at its estimate when the request reserves again, so the ledger counts as many calls
as the provider received, and each request still gets exactly one result.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from llmrouter.dispatch.budgets import read_all_accounts
from llmrouter.simulator import SimProfile
from llmrouter.topics import LEDGER_CHANGELOG
from llmrouter.wire.client import RouterClient
from tests.conftest import SimulatorThread, isolated_settings, joining_sibling, sim_provider, start_worker, stop_all

pytestmark = pytest.mark.kafka
REQUESTS = 8
CALL_S = 15.0
PRICE_PER_1K = 0.5


@pytest.fixture
def slow_sim():
    with SimulatorThread(SimProfile(latency_ms=CALL_S * 1000, token_delay_ms=0)) as thread:
        yield thread


def calls_received(sim: SimulatorThread) -> int:
    return sim.call(sim.sims[0].stats)["requests"]["openai"]


async def provider_accounts(settings) -> dict[str, dict]:
    """Every partition's account of the provider ``slow``, read from the ledger's changelog."""
    accounts = await read_all_accounts(settings.kafka.bootstrap_servers,
                                       LEDGER_CHANGELOG.format(app_id=settings.worker.app_id))
    return {key: account for key, account in accounts.items() if key.startswith("provider:slow:")}


async def test_calls_a_rebalance_cut_off_are_booked_and_each_request_is_answered_once(
        slow_sim, kafka_and_redis, tiny_model_dir, tmp_path):
    settings, path = await asyncio.to_thread(
        isolated_settings, tmp_path, tiny_model_dir, worker={"max_in_flight": 4},
        limits={"default_timeout_s": 300}, local_config={"enabled": False}, cache={"enabled": False},
        providers={"slow": sim_provider(slow_sim.sims[0], timeout_s=30, price_input_per_1k_usd=PRICE_PER_1K,
                                        price_output_per_1k_usd=PRICE_PER_1K)},
        fallback_chain=["slow"])
    first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
    second = None
    async with RouterClient(settings) as client:
        try:
            # The second worker's process is started first: it joins the group some 4 s after its log
            # says "Starting..." (the import takes longer), so the requests are sent then and it joins a few
            # seconds into their calls; the drain's grace (8 s) ends before the 15 s calls do.
            second = await joining_sibling(settings, path, tmp_path / "second")
            ids = [await client.send({"prompt": f"slow {i}", "max_tokens": 4}) for i in range(REQUESTS)]
            deadline = time.monotonic() + 30
            while calls_received(slow_sim) < 4:  # max_in_flight calls under way, the rest queued
                assert time.monotonic() < deadline, f"the provider saw {calls_received(slow_sim)} calls, want 4"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(second.wait_ready, consuming_only=True)
            await client.wait_for(ids, timeout_s=180)
        finally:
            await stop_all(second, first)
        await client.read_to_end()
    for rid in ids:
        firsts = [r for r in client.collected.results[rid] if not r.replay]
        assert len(firsts) == 1 and firsts[0].record["status"] == "ok", client.collected.results[rid]
    paid = calls_received(slow_sim)
    assert paid > REQUESTS, "no call was cut off by the rebalance: the test proves nothing"
    accounts = await provider_accounts(settings)
    assert sum(a["calls"] for a in accounts.values()) == paid, accounts
    assert all(not a["reserved"] for a in accounts.values()), accounts
    answered_usd = sum(client.collected.results[rid][0].record["cost_usd"] for rid in ids)
    assert sum(a["spent_usd"] for a in accounts.values()) > answered_usd
