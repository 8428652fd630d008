"""The answer cache through Kafka: hits answered at intake without a provider call, what may and may
not be cached, a clear that reaches the worker, L3 filling a fresh worker from the cache topic, and
Redis going down and coming back under a running worker. The provider is the simulator, whose own
request counter says how often it was paid."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from llmrouter.wire.client import RouterClient
from llmrouter.infra.redis import ScratchRedis
from llmrouter.simulator import SimProfile
from tests.conftest import SimulatorThread, free_port, isolated_settings, sibling_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0)) as thread:
        yield thread


def calls(sim: SimulatorThread) -> int:
    return sim.call(sim.sims[0].stats)["requests"]["openai"]


def settings_for(directory: Path, model_dir: Path, sim: SimulatorThread, **sections: dict):
    return isolated_settings(directory, model_dir, local_config={"enabled": False},
                             providers={"sim": sim_provider(sim.sims[0])}, fallback_chain=["sim"], **sections)


@pytest.fixture(scope="module")
def cached_setup(kafka_and_redis, tiny_model_dir: Path, sim: SimulatorThread, tmp_path_factory):
    """The settings and settings file of the module's worker."""
    return settings_for(tmp_path_factory.mktemp("cache-worker"), tiny_model_dir, sim)


@pytest.fixture(scope="module")
def cached_worker(cached_setup):
    settings, path = cached_setup
    worker = start_worker(path, settings, path.parent / "worker.log")
    yield worker
    worker.stop()
    print(worker.log_tail(20))


async def ask(settings, request: dict, *, timeout_s: float = 30.0) -> dict:
    async with RouterClient(settings) as client:
        rid = await client.send(request)
        collected = await client.wait_for([rid], timeout_s=timeout_s)
    return collected.results[rid][0].record


async def test_a_repeated_prompt_is_answered_from_l1_at_intake_without_a_provider_call(cached_worker, sim):
    settings = cached_worker.settings
    prompt = f"What is the capital of France? {uuid.uuid4()}"
    before = calls(sim)
    first = await ask(settings, {"prompt": prompt, "max_tokens": 8})
    assert (first["status"], first["route"], first["cache_level"]) == ("ok", "cloud", "none")
    assert first["route_reason"].startswith("simple: task general, prompt ")
    again = [await ask(settings, {"prompt": f"  {prompt}\n", "max_tokens": 8}) for _ in range(3)]  # whitespace normalised
    assert calls(sim) - before == 1, "a cached answer was paid for again"
    for record in again:
        assert (record["status"], record["route"], record["cache_level"]) == ("ok", "cache", "l1")
        assert record["text"] == first["text"] and record["provider"] == "sim" and record["cost_usd"] == 0.0
        assert record["attempts"] == []
        assert record["route_reason"] == f"cache hit at l1: the answer sim gave to {first['request_id']}"
    hits = cached_worker.metric("llmrouter_cache_hits_total", level="l1")
    assert hits >= 3
    assert cached_worker.get_json("/cache/")[1]["hits"]["l1"] >= 3


async def test_what_may_not_be_read_from_the_cache_goes_to_the_provider(cached_worker, sim):
    settings = cached_worker.settings
    prompt = f"Name a colour. {uuid.uuid4()}"
    await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "alice"})
    before = calls(sim)
    bypass = await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "alice", "cache_policy": "bypass"})
    other_user = await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "bob"})
    longer = await ask(settings, {"prompt": prompt, "max_tokens": 9, "user_id": "alice"})
    sampled = [await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "carol", "temperature": 0.7})
               for _ in range(2)]
    assert [r["route"] for r in (bypass, other_user, longer, *sampled)] == ["cloud"] * 5
    assert calls(sim) - before == 5
    hit = await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "alice"})
    assert hit["route"] == "cache" and calls(sim) - before == 5


async def test_refresh_pays_again_and_replaces_the_entry(cached_worker, sim):
    settings = cached_worker.settings
    prompt = f"Refresh me {uuid.uuid4()}"
    await ask(settings, {"prompt": prompt, "max_tokens": 8})
    before = calls(sim)
    refreshed = await ask(settings, {"prompt": prompt, "max_tokens": 8, "cache_policy": "refresh"})
    assert refreshed["route"] == "cloud" and calls(sim) - before == 1
    assert (await ask(settings, {"prompt": prompt, "max_tokens": 8}))["route"] == "cache"


async def test_a_streamed_request_that_hits_gets_one_final_chunk_and_its_result(cached_worker, sim):
    settings = cached_worker.settings
    prompt = f"Stream me {uuid.uuid4()}"
    first = await ask(settings, {"prompt": prompt, "max_tokens": 8})
    async with RouterClient(settings) as client:
        rid = await client.send({"prompt": prompt, "max_tokens": 8, "stream": True})
        collected = await client.wait_for([rid], timeout_s=30)
        deadline = time.monotonic() + 10
        while not collected.chunks.get(rid) and time.monotonic() < deadline:
            await client.poll(0.1)
    result = collected.results[rid][0].record
    assert result["route"] == "cache"
    chunks = collected.chunks[rid]
    assert [(c["seq"], c["final"], c["delta"]) for c in chunks] == [(0, True, first["text"])]


async def test_cache_clear_reaches_the_worker(cached_worker, cached_setup, sim):
    settings, path = cached_setup
    prompt = f"Clear me {uuid.uuid4()}"
    await ask(settings, {"prompt": prompt, "max_tokens": 8})
    assert (await ask(settings, {"prompt": prompt, "max_tokens": 8}))["route"] == "cache"
    clear = subprocess.run([sys.executable, "-m", "llmrouter", "--settings", str(path),
                            "cache", "clear", "--version", "1"], capture_output=True, text=True, timeout=60)
    assert clear.returncode == 0, clear.stderr
    deadline = time.monotonic() + 20
    while (record := await ask(settings, {"prompt": prompt, "max_tokens": 8}))["route"] == "cache":
        assert time.monotonic() < deadline, "the clear never reached the worker"
        await asyncio.sleep(0.2)
    assert record["route"] == "cloud"


async def test_l3_fills_a_fresh_worker_from_the_cache_topic_and_redis_comes_back_without_a_restart(
        kafka_and_redis, tiny_model_dir, sim, tmp_path):
    """Redis is down from the start (nothing listens on its port): answers are cached in L1 and L3 and
    health says degraded. A second worker with an empty disk then answers the same prompt from L3 (read
    from the cache topic). A Redis started on that port is picked up by the running worker."""
    port = free_port()
    (tmp_path / "a").mkdir()
    settings, path = await asyncio.to_thread(settings_for, tmp_path / "a", tiny_model_dir, sim,
                                             redis={"url": f"redis://127.0.0.1:{port}/0"}, cache={"redis_retry_s": 0.2})
    first = await asyncio.to_thread(start_worker, path, settings, tmp_path / "a" / "worker.log")
    prompt = f"Remember me {uuid.uuid4()}"
    try:
        before = calls(sim)
        answered = await ask(settings, {"prompt": prompt, "max_tokens": 8})
        assert answered["route"] == "cloud"
        health = first.health()
        assert health["cache"]["l2"].startswith("down") and health["degraded"]
        assert (await ask(settings, {"prompt": prompt, "max_tokens": 8}))["cache_level"] == "l1"
    finally:
        first.stop()
    second_settings, second_path = sibling_settings(settings, path, tmp_path / "b")
    second = await asyncio.to_thread(start_worker, second_path, second_settings, tmp_path / "b" / "worker.log")
    server = None
    try:
        deadline = time.monotonic() + 20
        while not second.get_json("/cache/")[1]["follower_caught_up"]:
            assert time.monotonic() < deadline, "the second worker never read the cache topic to its end"
            await asyncio.sleep(0.1)
        hit = await ask(second_settings, {"prompt": prompt, "max_tokens": 8})
        assert (hit["route"], hit["cache_level"], hit["text"]) == ("cache", "l3", answered["text"])
        assert calls(sim) - before == 1
        server = ScratchRedis(tmp_path, port).start()
        deadline = time.monotonic() + 20
        while second.health()["cache"]["l2"] != "ok":
            assert time.monotonic() < deadline, f"Redis was not picked up: {second.health()['cache']}"
            await asyncio.sleep(0.1)
        assert second.health()["degraded"] == []  # the cache's view and the health ping agree again
        fresh = f"After Redis came back {uuid.uuid4()}"
        await ask(second_settings, {"prompt": fresh, "max_tokens": 8})
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while not client.keys(f"{second_settings.worker.app_id}/llm:v1:*"):
            assert time.monotonic() < deadline, "the answer never reached Redis"
            await asyncio.sleep(0.05)
    finally:
        second.stop()
        if server is not None:
            server.kill()


async def test_a_request_answered_from_the_cache_and_delivered_again_is_re_emitted_as_a_replay(cached_worker, sim):
    settings = cached_worker.settings
    prompt = f"Twice {uuid.uuid4()}"
    await ask(settings, {"prompt": prompt, "max_tokens": 8})
    request = {"request_id": f"dup-{uuid.uuid4()}", "prompt": prompt, "max_tokens": 8}
    async with RouterClient(settings) as client:
        await client.send(request)
        await client.wait_for([request["request_id"]], timeout_s=30)
        await client.send(request)
        collected = await client.wait_for([request["request_id"]], timeout_s=30, results_each=2)
    first, second = collected.results[request["request_id"]]
    assert first.record["route"] == "cache" and not first.replay
    assert second.replay and second.raw == first.raw


async def test_with_the_semantic_cache_on_a_paraphrase_hits_and_a_near_miss_does_not(
        kafka_and_redis, tiny_model_dir, sim, tmp_path):
    """Opt-in: the same question in other words is answered from the first one's entry; a question
    that differs in one number goes to the provider (the guard, not the similarity, refuses it)."""
    settings, path = await asyncio.to_thread(settings_for, tmp_path, tiny_model_dir, sim,
                                             cache={"semantic_enabled": True})
    worker = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker.log")
    try:
        tag = uuid.uuid4().hex[:6]  # a user of its own: no entry of another test is in scope
        first = await ask(settings, {"prompt": "What is the capital of France?", "max_tokens": 8, "user_id": tag})
        before = calls(sim)
        paraphrase = await ask(settings, {"prompt": "Tell me the capital of France, please.", "max_tokens": 8,
                                          "user_id": tag})
        assert (paraphrase["route"], paraphrase["text"]) == ("cache", first["text"])
        await ask(settings, {"prompt": "Convert 5 km to miles.", "max_tokens": 8, "user_id": tag})
        other = await ask(settings, {"prompt": "Convert 50 km to miles.", "max_tokens": 8, "user_id": tag})
        assert other["route"] == "cloud"
        assert calls(sim) - before == 2
        assert worker.metric("llmrouter_cache_hits_total", level="l1_semantic") == 1
    finally:
        await asyncio.to_thread(worker.stop)


async def test_a_popular_entry_is_refreshed_before_it_expires(kafka_and_redis, tiny_model_dir, sim, tmp_path):
    """Entries live 6 s; the warmer looks every second and asks again for a popular one that expires
    within 4 s. Past the first entry's expiry the prompt is still a hit, and the provider was asked again
    in the background, not by a request."""
    settings, path = await asyncio.to_thread(
        settings_for, tmp_path, tiny_model_dir, sim, cache_config={"ttl_default": 6},
        cache={"warm_interval_s": 1, "refresh_ahead_s": 4, "l2_enabled": False})
    worker = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker.log")
    try:
        prompt = f"Keep me fresh {uuid.uuid4()}"
        before = calls(sim)
        first = await ask(settings, {"prompt": prompt, "max_tokens": 8})
        assert first["route"] == "cloud"
        assert (await ask(settings, {"prompt": prompt, "max_tokens": 8}))["route"] == "cache"  # popular now
        expired_at = time.monotonic() + 6.5
        while time.monotonic() < expired_at:
            await asyncio.sleep(0.2)
        late = await ask(settings, {"prompt": prompt, "max_tokens": 8})
        assert (late["route"], late["text"]) == ("cache", first["text"])
        assert calls(sim) - before >= 2, "nothing was refreshed: the late hit cannot be the first entry"
        assert worker.get_json("/cache/")[1]["warming"]["refreshed"] >= 1
    finally:
        await asyncio.to_thread(worker.stop)
