"""Two workers of one group: every table view answers for the whole group from either worker, and the windowed
counts (each subject owned by one worker) add up to what was sent (issue 10, "What must be shown")."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.simulator import SimProfile
from tests.conftest import SimulatorThread, isolated_settings, sibling_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka
REQUESTS = 40


async def test_either_worker_answers_for_every_key_and_the_windows_add_up_to_what_was_sent(
        kafka_and_redis, tiny_model_dir, tmp_path):
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0)) as sims:
        (sim,) = sims.sims
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
            providers={"sim": sim_provider(sim, price_input_per_1k_usd=1.0, price_output_per_1k_usd=1.0)},
            fallback_chain=["sim"], windows={"size_s": 1, "flush_interval_s": 0.2, "retention_s": 600})
        second_settings, second_path = sibling_settings(settings, path, tmp_path / "second")
        workers = [start_worker(path, settings, tmp_path / "worker-1.log"),
                   start_worker(second_path, second_settings, tmp_path / "worker-2.log")]
        try:
            deadline = time.monotonic() + 60
            while not all(w.health()["kafka"]["assigned_partitions"] and not w.health()["kafka"]["rebalancing"]
                          for w in workers):
                assert time.monotonic() < deadline, "the group never settled"
                await asyncio.sleep(0.2)
            async with RouterClient(settings) as client:
                ids = [await client.send({"prompt": f"views {i} {uuid.uuid4()}", "max_tokens": 4},
                                         priority=("high", "normal", "low")[i % 3]) for i in range(REQUESTS)]
                collected = await client.wait_for(ids, timeout_s=60)
            assert all(collected.results[rid][0].record["status"] == "ok" for rid in ids)

            def counted(view: dict, subject: str) -> int:
                return view["subjects"].get(subject, {}).get("retained", {}).get("count", 0)

            deadline = time.monotonic() + 30
            while True:  # the last flush of each worker (every 0.2 s) reaches the owners
                views = [w.get_json("/windows/?all=1")[1] for w in workers]
                by_priority = [sum(counted(v, f"priority:{p}") for p in ("high", "normal", "low")) for v in views]
                if all(counted(v, "all") == REQUESTS for v in views) and by_priority == [REQUESTS, REQUESTS]:
                    break  # each subject's batches reach its owner on their own
                assert time.monotonic() < deadline, [counted(v, "all") for v in views]
                await asyncio.sleep(0.2)
            halves = [w.get_json("/windows/")[1] for w in workers]  # each worker's own partitions
            for subject in ("all", "provider:sim"):
                assert sum(counted(h, subject) for h in halves) == REQUESTS, subject

            ledgers = [w.get_json("/ledger/?all=1")[1]["totals"] for w in workers]
            assert ledgers[0] == ledgers[1]
            month = next(k for k in ledgers[0] if k.startswith("provider:sim:"))
            assert ledgers[0][month]["calls"] == REQUESTS
            deadline = time.monotonic() + 15
            while True:  # the alert states are judged on ticks: the two reads agree once no new pair appears
                pairs = [{(a["rule"], a["subject"]) for a in w.get_json("/alerts/?all=1")[1]["states"]}
                         for w in workers]
                if pairs[0] == pairs[1]:
                    break
                assert time.monotonic() < deadline, pairs
                await asyncio.sleep(0.2)
            group = [w.get_json("/breakers/")[1]["group"] for w in workers]
            assert group[0].keys() == group[1].keys() and "sim" in group[0]
            for rid in ids[:5]:
                for worker in workers:
                    status, stored = worker.get_json(f"/requests/{rid}/")
                    assert status == 200 and stored["request_id"] == rid
        finally:
            await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
