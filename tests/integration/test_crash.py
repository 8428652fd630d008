"""SIGKILL while requests are in flight: nothing is lost, nothing answered is
sent to the model again."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmrouter.wire.client import RouterClient

from tests.conftest import isolated_settings, start_worker

pytestmark = pytest.mark.kafka
REQUESTS = 40


@pytest.fixture
def crash_settings(kafka_and_redis, tiny_model_dir, tmp_path):
    return isolated_settings(tmp_path, tiny_model_dir, worker={"max_in_flight": 8}, limits={"default_timeout_s": 600})


async def test_sigkill_mid_stream_loses_no_request_and_never_calls_the_model_twice(crash_settings, tmp_path):
    """Kill -9 the worker once a few results are out and others are in flight; a new
    worker answers every remaining request, and each request answered before the kill
    is only ever re-emitted from the stored result (same bytes; the replay header on
    every copy but, at most, one whose delivered mark the kill cut off)."""
    settings, path = crash_settings
    first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-1.log")
    async with RouterClient(settings) as client:
        ids = [await client.send({"prompt": f"request number {i}", "max_tokens": 48}, priority="normal")
               for i in range(REQUESTS)]
        deadline = time.monotonic() + 60
        while len(client.collected.results) < 5:  # a few answered, the rest queued or in flight
            assert time.monotonic() < deadline, "the first worker answered nothing"
            await client.poll(0.05)
        first.kill()
        answered_before = {rid: got[0] for rid, got in client.collected.results.items()}
        assert len(answered_before) < REQUESTS, "the worker finished everything before the kill; nothing was in flight"

        second = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker-2.log")
        try:
            try:
                collected = await client.wait_for(ids, timeout_s=60)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; the second worker's /work/: {second.get_json('/work/')}") from exc
            model_calls_after = second.metric("llmrouter_provider_calls_total", provider="local", outcome="ok")
        finally:
            second.stop()

    assert set(collected.results) == set(ids)
    statuses = {r.record["status"] for rid in ids for r in collected.results[rid]}
    assert statuses == {"ok"}
    for rid, before in answered_before.items():
        later = collected.results[rid][1:]
        assert all(r.raw == before.raw for r in later), f"{rid} was answered again, not re-emitted"
        # The answer is marked delivered only after its result was written: a kill between the
        # two re-emits one more copy without the replay header (a duplicate, never a loss).
        assert sum(not r.replay for r in later) <= 1, f"{rid} re-emitted as a first copy more than once"
    assert 1 <= model_calls_after <= REQUESTS - len(answered_before)
