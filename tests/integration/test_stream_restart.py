"""A stream that a rebalance cuts off starts again with ``restart: true`` on the next delivery (issue 19, item 6).

One worker streams slow answers (a token every 400 ms, 40 tokens: 16 s each), one request per accepted
partition at least; a second worker joins while they stream. The drain lets the calls under way go on
for ``revoke_grace_s`` (8 s) and then cancels them; each cut-off request is delivered again, to
whichever worker owns its partition now, and streams again from seq 0. The consumer must be told to
drop the text it had: that delivery's first chunk says ``restart``. Each request still ends in exactly
one result, and its last delivery's text is the result's text.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from llmrouter.simulator import SimProfile
from llmrouter.wire.client import RouterClient
from tests.conftest import SimulatorThread, isolated_settings, joining_sibling, sim_provider, start_worker, stop_all

pytestmark = pytest.mark.kafka
REQUESTS = 4
TOKENS = 40
TOKEN_DELAY_MS = 400


def deliveries(chunks: list[dict]) -> list[list[dict]]:
    """A request's chunks in the order received, split where a stream starts again at seq 0."""
    runs: list[list[dict]] = []
    for chunk in chunks:
        if chunk["seq"] == 0 or not runs:
            runs.append([])
        runs[-1].append(chunk)
    return runs


async def test_a_stream_cut_off_by_a_rebalance_restarts_with_the_restart_flag(kafka_and_redis, tiny_model_dir,
                                                                                tmp_path):
    with SimulatorThread(SimProfile(latency_ms=0, token_delay_ms=TOKEN_DELAY_MS)) as sim:
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, worker={"max_in_flight": 4},
            limits={"default_timeout_s": 300}, local_config={"enabled": False}, cache={"enabled": False},
            providers={"slow": sim_provider(sim.sims[0], timeout_s=60, retry_attempts=0)}, fallback_chain=["slow"])
        first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
        second = None
        async with RouterClient(settings) as client:
            try:
                second = await joining_sibling(settings, path, tmp_path / "second")
                ids = [await client.send({"prompt": f"stream {i}", "max_tokens": TOKENS, "stream": True})
                       for i in range(REQUESTS)]
                deadline = time.monotonic() + 30
                while not all(client.collected.chunks.get(rid) for rid in ids):  # every stream under way
                    assert time.monotonic() < deadline, "the streams never started"
                    await client.poll(0.2)
                await asyncio.to_thread(second.wait_ready, consuming_only=True)
                await client.wait_for(ids, timeout_s=180)
            finally:
                await stop_all(second, first)
            await client.read_to_end()

    restarted = 0
    for rid in ids:
        firsts = [r for r in client.collected.results[rid] if not r.replay]
        assert len(firsts) == 1 and firsts[0].record["status"] == "ok", client.collected.results[rid]
        runs = deliveries(client.collected.chunks[rid])
        assert not runs[0][0]["restart"], runs[0][0]
        for run in runs[1:]:
            assert run[0]["restart"], f"{rid}: a delivery's stream started again without restart: {run[0]}"
        restarted += len(runs) > 1
        assert "".join(c["delta"] for c in runs[-1]) == firsts[0].record["text"]
    assert restarted, "no stream was cut off by the rebalance: the test proves nothing"
