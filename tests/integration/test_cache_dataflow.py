"""The answer cache through Kafka: hits answered at intake without a provider call, what may and may
not be cached, a clear that reaches the worker, L3 filling a fresh worker from the cache topic, and
Redis going down and coming back under a running worker. The provider is the simulator, whose own
request counter says how often it was paid."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from llmrouter.infra.redis import ScratchRedis
from llmrouter.simulator import SimProfile
from llmrouter.topics import STREAM
from tests.conftest import (SimulatorThread, free_port, isolated_settings, read_topic_to_end, sibling_settings,
                            sim_provider, start_worker)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0)) as thread:
        yield thread


def calls(sim: SimulatorThread, flavor: str = "openai", index: int = 0) -> int:
    return sim.call(sim.sims[index].stats)["requests"][flavor]


def settings_for(directory: Path, model_dir: Path, sim: SimulatorThread, **sections: dict):
    """One provider in the chain, ``sim``; ``spare`` (OpenAI wire format) and ``claude`` (Anthropic's) on the same
    simulator, asked only by requests whose allow-list names them (they follow sim in the chain)."""
    claude = sim_provider(sim.sims[0], kind="anthropic", endpoint=sim.sims[0].base_urls()["anthropic"],
                          price_input_per_1k_usd=0.001, price_output_per_1k_usd=0.002)  # premium kinds are priced
    providers = {"sim": sim_provider(sim.sims[0]), "spare": sim_provider(sim.sims[0]), "claude": claude}
    return isolated_settings(directory, model_dir, local_config={"enabled": False},
                             providers=sections.pop("providers", providers),
                             fallback_chain=sections.pop("fallback_chain", ["sim"]), **sections)


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
        assert re.fullmatch(r"cache hit \(l1, stored \d+\.\d s ago\)", record["route_reason"])
        assert first["request_id"] not in record["route_reason"]  # another user's request, in the anon scope
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


async def test_the_same_user_id_in_another_tenant_gets_a_miss(cached_worker, sim):
    """User "42" of tenant A and user "42" of tenant B are two users: B's request is not answered with A's."""
    settings = cached_worker.settings
    a, b = f"tenant-a-{uuid.uuid4().hex[:8]}", f"tenant-b-{uuid.uuid4().hex[:8]}"
    prompt = f"What is my balance? {uuid.uuid4()}"
    before = calls(sim)
    first = await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "42", "metadata": {"tenant": a}})
    again = await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "42", "metadata": {"tenant": a}})
    other = await ask(settings, {"prompt": prompt, "max_tokens": 8, "user_id": "42", "metadata": {"tenant": b}})
    assert (first["route"], again["route"], other["route"]) == ("cloud", "cache", "cloud")
    assert calls(sim) - before == 2


async def test_prompts_that_differ_only_in_indentation_do_not_share_an_answer(cached_worker, sim):
    """YAML whose nesting differs by two spaces is another question; the same text with CRLF is not."""
    settings = cached_worker.settings
    tag = uuid.uuid4().hex
    flat, nested = f"Fix this YAML {tag}:\na:\nb: 1", f"Fix this YAML {tag}:\na:\n  b: 1"
    before = calls(sim)
    records = [await ask(settings, {"prompt": prompt, "max_tokens": 8})
               for prompt in (flat, nested, nested.replace("\n", "\r\n"))]
    assert [r["route"] for r in records] == ["cloud", "cloud", "cache"]
    assert calls(sim) - before == 2


async def test_a_sampled_seeded_answer_is_cached_only_from_a_provider_that_sends_the_seed(cached_worker, sim):
    """temperature 0.7 with a seed: the OpenAI-format provider sends the seed, so its answer is cached; the
    Anthropic-format one sends none, so its sampled answer is asked again every time."""
    settings = cached_worker.settings
    prompt = f"Tell me a story {uuid.uuid4()}"
    sampled = {"prompt": prompt, "max_tokens": 8, "temperature": 0.7, "seed": 7}
    anthropic_before = calls(sim, "anthropic")
    claude = [await ask(settings, {**sampled, "providers": ["claude"]}) for _ in range(2)]
    assert [(r["route"], r["provider"]) for r in claude] == [("cloud", "claude")] * 2
    assert calls(sim, "anthropic") - anthropic_before == 2
    spare = [await ask(settings, {**sampled, "providers": ["spare"]}) for _ in range(2)]
    assert [(r["route"], r["provider"]) for r in spare] == [("cloud", "spare"), ("cache", "spare")]


async def test_a_provider_disabled_by_an_override_has_its_cached_answers_not_served(cached_worker, cached_setup, sim):
    """`override disable spare`: a request only spare may answer is refused rather than served spare's cached
    answer; once the override is cleared the entry serves again."""
    settings, path = cached_setup
    request = {"prompt": f"Only spare {uuid.uuid4()}", "max_tokens": 8, "providers": ["spare"]}
    await ask(settings, request)
    assert (await ask(settings, request))["route"] == "cache"

    def override(action: str) -> None:
        done = subprocess.run([sys.executable, "-m", "llmrouter", "--settings", str(path), "override", action,
                               "spare"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    override("disable")
    try:
        deadline = time.monotonic() + 20
        while (record := await ask(settings, request))["route"] == "cache":
            assert time.monotonic() < deadline, "the disabled provider's cached answer is still served"
            await asyncio.sleep(0.2)
        assert record["status"] == "rejected" and record["provider"] is None
    finally:
        override("clear")
    deadline = time.monotonic() + 20
    while (await ask(settings, request))["route"] != "cache":
        assert time.monotonic() < deadline, "the entry never served again after the override was cleared"
        await asyncio.sleep(0.2)


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


async def test_cache_clear_by_tenant_clears_its_users_in_every_level_and_no_other_tenant(cached_worker, cached_setup,
                                                                                          sim):
    """`cache clear --version 1 --tenant T`: T's own entry and T's user 42's go (on the worker and in Redis);
    user 42 of tenant TT, whose name starts with T's, keeps its entry."""
    settings, path = cached_setup
    tenant = f"T{uuid.uuid4().hex[:8]}"
    prompt = f"Clear my tenant {uuid.uuid4()}"
    askers = {"own": {"metadata": {"tenant": tenant}}, "user": {"user_id": "42", "metadata": {"tenant": tenant}},
              "other": {"user_id": "42", "metadata": {"tenant": tenant + "T"}}}
    for who in askers.values():
        await ask(settings, {"prompt": prompt, "max_tokens": 8, **who})
        assert (await ask(settings, {"prompt": prompt, "max_tokens": 8, **who}))["route"] == "cache"
    client = redis.Redis.from_url(settings.redis.url)
    namespace = f"{settings.worker.app_id}/llm:v1:"

    def in_redis(pattern: str) -> list[bytes]:
        return client.keys(namespace + pattern)

    deadline = time.monotonic() + 10
    while cached_worker.get_json("/cache/")[1]["l2"]["queued_writes"]:  # each hit above: its Redis write queued
        assert time.monotonic() < deadline, "the answers never reached Redis"
        await asyncio.sleep(0.05)
    clear = subprocess.run([sys.executable, "-m", "llmrouter", "--settings", str(path), "cache", "clear",
                            "--version", "1", "--tenant", tenant], capture_output=True, text=True, timeout=60)
    assert clear.returncode == 0, clear.stderr
    assert in_redis(f"t.{tenant}:*") == in_redis(f"t.{tenant}.u.*") == []
    for who in ("own", "user"):
        deadline = time.monotonic() + 20
        while (record := await ask(settings, {"prompt": prompt, "max_tokens": 8, **askers[who]}))["route"] == "cache":
            assert time.monotonic() < deadline, f"the clear never reached tenant {tenant}'s {who} entry"
            await asyncio.sleep(0.2)
        assert record["route"] == "cloud"
    assert (await ask(settings, {"prompt": prompt, "max_tokens": 8, **askers["other"]}))["route"] == "cache"
    assert in_redis(f"t.{tenant}T.u.42:*")  # and its Redis entry stays


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


@pytest.fixture
def two_sims() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0), SimProfile(latency_ms=5, token_delay_ms=0)) as t:
        yield t


async def test_a_refresh_asks_only_the_provider_that_answered_and_streams_nothing(
        kafka_and_redis, tiny_model_dir, two_sims, tmp_path):
    """Chain first, then second (each on a simulator of its own). first refuses the first call, so second's
    answer is cached; the popular lookup that follows is streamed. The refresh ahead then asks second again,
    never first (which answers fine by then), and publishes no chunk under the streamed request's id."""
    first, second = two_sims.sims
    settings, path = await asyncio.to_thread(
        settings_for, tmp_path, tiny_model_dir, two_sims, cache_config={"ttl_default": 6},
        cache={"warm_interval_s": 1, "refresh_ahead_s": 4, "l2_enabled": False},
        providers={"first": sim_provider(first), "second": sim_provider(second)}, fallback_chain=["first", "second"])
    worker = await asyncio.to_thread(start_worker, path, settings, tmp_path / "worker.log")
    try:
        two_sims.call(first.script, ["auth_error"], "openai")
        prompt = f"Who answered? {uuid.uuid4()}"
        answered = await ask(settings, {"prompt": prompt, "max_tokens": 8})
        assert (answered["route"], answered["provider"]) == ("cloud", "second")
        first_calls, second_calls = calls(two_sims, index=0), calls(two_sims, index=1)
        async with RouterClient(settings) as client:
            rid = await client.send({"prompt": prompt, "max_tokens": 8, "stream": True})
            hit = (await client.wait_for([rid], timeout_s=30)).results[rid][0].record
        assert (hit["route"], hit["provider"]) == ("cache", "second")
        deadline = time.monotonic() + 20
        while worker.get_json("/cache/")[1]["warming"]["refreshed"] < 1:
            assert time.monotonic() < deadline, f"nothing was refreshed: {worker.get_json('/cache/')[1]['warming']}"
            await asyncio.sleep(0.2)
        assert calls(two_sims, index=1) > second_calls and calls(two_sims, index=0) == first_calls
        late = await ask(settings, {"prompt": prompt, "max_tokens": 8})
        assert (late["route"], late["provider"]) == ("cache", "second")
        chunks = await read_topic_to_end(settings.topic(STREAM), settings.kafka.partitions, want={rid})
        assert [Codec().decode("StreamChunk", m.value)["seq"] for m in chunks[rid]] == [0]  # the hit's, no more
    finally:
        await asyncio.to_thread(worker.stop)
