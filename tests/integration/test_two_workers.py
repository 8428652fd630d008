"""Two workers in one consumer group share the partitions: every request is
answered once, each worker's web view finds a stored result wherever it lives,
and a provider registration reaches both."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.runtime.new_group import seed_new_group
from llmrouter.commands.providers import produce_registration
from llmrouter.providers.spec import ProviderSpec
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import isolated_settings, sibling_settings, start_worker, worker_process

pytestmark = pytest.mark.kafka
REQUESTS = 24


@pytest.fixture(scope="module")
def two_workers(kafka_and_redis, tiny_model_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("two-workers")
    settings, path = isolated_settings(tmp_path, tiny_model_dir)
    first = start_worker(path, settings, tmp_path / "worker-1.log")
    second_settings, second_path = sibling_settings(settings, path, tmp_path / "second")
    second = start_worker(second_path, second_settings, tmp_path / "worker-2.log")
    yield first, second
    second.stop()
    first.stop()


async def test_two_workers_split_the_work_and_answer_each_request_once(two_workers):
    """Both workers end up with partitions and answer requests; no request gets a second
    model answer; /requests/{id}/ on either worker returns the stored result."""
    first, second = two_workers
    deadline = time.monotonic() + 60
    while not (first.health()["kafka"]["assigned_partitions"] and second.health()["kafka"]["assigned_partitions"]):
        assert time.monotonic() < deadline, "the group never gave both workers partitions"
        await asyncio.sleep(0.2)
    while first.health()["kafka"]["rebalancing"] or second.health()["kafka"]["rebalancing"]:
        assert time.monotonic() < deadline, "the group kept rebalancing"
        await asyncio.sleep(0.2)

    async with RouterClient(first.settings) as client:
        ids = [await client.send({"prompt": f"shared {i}", "max_tokens": 4}, priority=("high", "low")[i % 2])
               for i in range(REQUESTS)]
        collected = await client.wait_for(ids, timeout_s=120)

    assert all(len(collected.results[rid]) == 1 and not collected.results[rid][0].replay for rid in ids)
    calls = [w.metric("llmrouter_provider_calls_total", provider="local", outcome="ok") for w in (first, second)]
    assert sum(calls) == REQUESTS and all(c > 0 for c in calls), calls
    for rid in ids[:6]:
        for worker in (first, second):
            status, stored = worker.get_json(f"/requests/{rid}/")
            assert status == 200 and stored["request_id"] == rid


async def test_a_registration_reaches_every_worker_within_seconds(two_workers):
    """Each worker reads the whole llm.providers topic (no consumer group), so both list a provider
    registered once, and both drop it when it is removed."""
    first, second = two_workers
    spec = ProviderSpec(name="shared-vllm", kind="openai_compatible", endpoint="http://127.0.0.1:9/v1",
                        api_key_env="", models=("m",))
    started = time.monotonic()
    await produce_registration(first.settings, spec.name, spec)
    for present in (True, False):
        listed = set()
        while listed != {present}:
            assert time.monotonic() - started < 10, f"not every worker saw it within 10 s: {listed}"
            listed = {("shared-vllm" in {p["name"] for p in w.get_json("/providers/")[1]["providers"]})
                      for w in (first, second)}
            await asyncio.sleep(0.1)
        if present:
            await produce_registration(first.settings, spec.name, None)


async def test_two_workers_starting_together_under_load_lose_no_request(kafka_and_redis, tiny_model_dir, tmp_path):
    """Requests arrive while two workers of a new group start at once: the group rebalances while both
    recover, and every partition of the new group is committed at 0. faust drops a batch it fetched when
    its seek to the committed offsets races the fetcher, and aiokafka's seek_to_committed does not seek to
    offset 0: the dropped requests were never fetched again and the commit walked past them. Each request
    must get exactly one result without the replay header (a redelivered one may add flagged replays)."""
    settings, path = await asyncio.to_thread(isolated_settings, tmp_path, tiny_model_dir,
                                             kafka={"request_partitions": 4, "partitions": 4})
    second_settings, second_path = sibling_settings(settings, path, tmp_path / "second")
    first = worker_process(path, settings, tmp_path / "worker-1.log")
    second = worker_process(second_path, second_settings, tmp_path / "worker-2.log")
    await seed_new_group(settings)  # the group's partitions are committed at 0, as for any new group
    first.start()
    second.start()  # at once: the group rebalances while both recover
    try:
        deadline = time.monotonic() + 60
        while not all(_assigned(w) for w in (first, second)):  # both have partitions, recovery under way
            assert time.monotonic() < deadline, "the group never gave both workers partitions"
            await asyncio.sleep(0.05)
        async with RouterClient(settings) as client:
            ids = [await client.send({"prompt": f"together {i} {uuid.uuid4()}", "max_tokens": 4}) for i in range(20)]
            collected = await client.wait_for(ids, timeout_s=90)
        firsts = {rid: [r.record["status"] for r in collected.results[rid] if not r.replay] for rid in ids}
        assert {rid: statuses for rid, statuses in firsts.items() if statuses != ["ok"]} == {}
    finally:
        await asyncio.gather(asyncio.to_thread(first.stop), asyncio.to_thread(second.stop))


def _assigned(worker: WorkerProcess) -> bool:
    try:
        return bool(worker.health()["kafka"]["assigned_partitions"])
    except (OSError, KeyError):
        return False
