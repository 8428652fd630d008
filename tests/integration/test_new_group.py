"""Where a new consumer group starts, on the real broker: at the requests produced within
``kafka.new_group_lookback_s``, never at the stale ones before them; partitions with a
committed offset, and groups with active members, are left alone."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from llmrouter.wire.client import Collected, RouterClient
from llmrouter.runtime.new_group import seed_new_group
from llmrouter.config.settings import Settings
from llmrouter.topics import group_source_topics
from tests.conftest import BOOTSTRAP, committed_offsets, isolated_settings, start_worker

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]
TWO_HOURS_S = 7200


async def own_settings(directory: Path, model_dir: Path, **sections: dict) -> tuple[Settings, Path]:
    """:func:`isolated_settings` (it runs a loop of its own) from inside a test's loop."""
    return await asyncio.to_thread(isolated_settings, directory, model_dir, **sections)


async def commit_as_group(group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit offsets for ``group`` from outside it, as a group that ran before would have."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def produce_requests(topic: str, partition: int, count: int, *, age_s: float, tag: str) -> list[str]:
    """``count`` JSON requests to one partition, with record timestamps (and created_at) ``age_s`` ago."""
    at_ms = int((time.time() - age_s) * 1000)
    ids = [f"{tag}-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for request_id in ids:
            value = json.dumps({"request_id": request_id, "prompt": f"{tag} request", "max_tokens": 4,
                                "created_at_ms": at_ms}).encode()
            await producer.send_and_wait(topic, value, partition=partition, timestamp_ms=at_ms)
    finally:
        await producer.stop()
    return ids


@dataclass
class NewGroupRun:
    settings: Settings
    collected: Collected
    stale_new: list[str]  # two hours old, on a partition the group had no offset for
    fresh_new: list[str]  # just produced, same partition
    stale_committed: list[str]  # two hours old, on a partition the group had committed before them
    log: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def new_group_run(kafka_and_redis, tiny_model_dir, tmp_path_factory) -> AsyncIterator[NewGroupRun]:
    """Before the group's first worker starts: llm.requests.normal partition 0 has a committed
    offset (0) followed by 2 stale requests; partition 1 has none, and 3 stale then 2 fresh
    requests. Then one worker runs until the fresh and the committed partition's requests are
    answered, and a few seconds more for anything else to show up."""
    directory = tmp_path_factory.mktemp("new-group")
    settings, path = await own_settings(directory, tiny_model_dir)
    normal = settings.topic("llm.requests.normal")
    await commit_as_group(settings.worker.app_id, {TopicPartition(normal, 0): 0})
    stale_committed = await produce_requests(normal, 0, 2, age_s=TWO_HOURS_S, tag="stale-committed")
    stale_new = await produce_requests(normal, 1, 3, age_s=TWO_HOURS_S, tag="stale-new")
    fresh_new = await produce_requests(normal, 1, 2, age_s=0, tag="fresh-new")

    async with RouterClient(settings) as client:
        worker = await asyncio.to_thread(start_worker, path, settings, directory / "worker.log")
        try:
            await client.wait_for(fresh_new + stale_committed, timeout_s=90)
            grace_ends = time.monotonic() + 5.0
            while time.monotonic() < grace_ends:
                await client.poll(0.5)
        finally:
            worker.stop()
    yield NewGroupRun(settings, client.collected, stale_new, fresh_new, stale_committed,
                      worker.log_path.read_text(errors="replace"))


async def test_a_new_group_serves_the_requests_produced_within_the_lookback(new_group_run):
    """The two fresh requests on the partition without an offset get their results."""
    for request_id in new_group_run.fresh_new:
        assert len(new_group_run.collected.results[request_id]) == 1


async def test_a_new_group_never_serves_requests_older_than_the_lookback(new_group_run):
    """The three requests produced two hours ago on that partition get no result."""
    assert not set(new_group_run.stale_new) & set(new_group_run.collected.results)


async def test_a_partition_with_a_committed_offset_is_not_moved(new_group_run):
    """Partition 0 had a committed offset before its two stale requests: the group starts
    there, so they are served (as an existing group serves what arrived while it was down)."""
    for request_id in new_group_run.stale_committed:
        assert len(new_group_run.collected.results[request_id]) == 1


async def test_the_worker_logs_where_the_new_group_starts_one_line_per_topic(new_group_run):
    """One line per source topic; llm.requests.normal names only partition 1, at the first
    fresh request (offset 3), with the 3 stale ones skipped."""
    lines = [line for line in new_group_run.log.splitlines() if "new_group_start_offsets" in line]
    print("\n".join(lines))
    topics = [spec.name for spec in group_source_topics(new_group_run.settings)]
    assert sorted(line.split("topic='")[1].split("'")[0] for line in lines) == sorted(topics)
    [normal] = [line for line in lines if f"topic='{new_group_run.settings.topic('llm.requests.normal')}'" in line]
    assert "offsets='p1@3'" in normal and "stale_skipped=3" in normal and "recent_kept=2" in normal


async def test_seeding_commits_once_and_never_moves_a_committed_offset(kafka_and_redis, tiny_model_dir, tmp_path):
    """Two stale requests on llm.requests.low partition 0 of a new group: it starts at the
    end there (offset 2); called again, nothing is seeded and every offset stays."""
    settings, _ = await own_settings(tmp_path, tiny_model_dir)
    low = settings.topic("llm.requests.low")
    await produce_requests(low, 0, 2, age_s=TWO_HOURS_S, tag="stale")
    partitions = [TopicPartition(spec.name, p) for spec in group_source_topics(settings)
                  for p in range(spec.partitions)]

    first = await seed_new_group(settings)
    offsets = await committed_offsets(settings.worker.app_id, partitions)
    assert {(s.partition, s.offset) for s in first} == {(tp, 2 if tp == TopicPartition(low, 0) else 0)
                                                          for tp in partitions}
    assert offsets[TopicPartition(low, 0)] == 2 and set(offsets.values()) == {0, 2}

    assert await seed_new_group(settings) == []
    assert await committed_offsets(settings.worker.app_id, partitions) == offsets


async def test_a_group_with_active_members_is_left_alone(kafka_and_redis, tiny_model_dir, tmp_path):
    """While a member of the group holds its partitions, nothing is committed for it."""
    settings, _ = await own_settings(tmp_path, tiny_model_dir)
    normal = settings.topic("llm.requests.normal")
    member = AIOKafkaConsumer(normal, bootstrap_servers=BOOTSTRAP, group_id=settings.worker.app_id,
                              enable_auto_commit=False)
    await member.start()
    try:
        while not member.assignment():
            await member.getmany(timeout_ms=200)
        assert await seed_new_group(settings) == []
        partitions = [TopicPartition(normal, p) for p in range(settings.kafka.request_partitions)]
        assert set((await committed_offsets(settings.worker.app_id, partitions)).values()) == {-1}
    finally:
        await member.stop()
