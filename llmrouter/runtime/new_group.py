"""Where a new consumer group starts: at recent requests, not a week of stale ones.

The request topics (and the internal accepted ones) keep a week of records so
that requests survive an outage of the workers. Faust starts a group that has
no committed offset at the earliest record (``consumer_auto_offset_reset=
"earliest"``), so a new group (a new ``worker.app_id``, a group whose offsets
expired) would work through that whole week of requests nobody waits for any
more, paying providers for each. DESIGN asks for "a new consumer group that
does not work through a week of stale requests".

So, before faust starts, :func:`seed_new_group` commits for each partition of
those topics that has **no committed offset** the offset of the first record
produced within the last ``kafka.new_group_lookback_s`` seconds (found with
``offsets_for_times``), or the partition's end when nothing is that recent.
Faust then finds a committed offset and starts there. Partitions with a
committed offset are left alone: an existing group serves what arrived while
it was down. A group with active members is left alone too (the broker would
refuse a commit from outside the group anyway).

Committing from outside the group works on an empty group with manually
assigned partitions (``group_id`` + ``assign`` + ``commit``), checked against
Kafka 4.0.2.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError, for_code

from llmrouter.config.settings import Settings
from llmrouter.topics import group_source_topics

log = structlog.get_logger("llmrouter.topics")
_INACTIVE_GROUP_STATES = ("Empty", "Dead")  # "Dead": the broker knows nothing of the group
# A fresh cluster creates __consumer_offsets at the first group request and answers
# "coordinator not available" meanwhile; the admin client does not retry that itself.
COORDINATOR_WAIT_S = 30.0
_RETRY_EVERY_S = 0.5


@dataclass(frozen=True)
class StartOffset:
    """Where the group starts in one partition, and what it skips there."""

    partition: TopicPartition
    offset: int
    first: int  # the partition's first retained offset
    end: int  # its end when the offset was chosen

    @property
    def skipped(self) -> int:
        """Records older than the lookback the group will not read."""
        return self.offset - self.first

    @property
    def kept(self) -> int:
        """Recent records the group will read."""
        return self.end - self.offset


def plan_start_offsets(
    unset: Sequence[TopicPartition], recent: Mapping[TopicPartition, int | None],
    firsts: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int],
) -> list[StartOffset]:
    """For each partition without a committed offset: its first recent record (``recent``,
    as ``offsets_for_times`` found it), else its end."""
    out = []
    for tp in unset:
        offset = recent.get(tp)
        out.append(StartOffset(tp, ends[tp] if offset is None else offset, firsts[tp], ends[tp]))
    return out


async def seed_new_group(settings: Settings, *, now_s: float | None = None) -> list[StartOffset]:
    """Commit start offsets for the partitions of the group's source topics that have none; return them."""
    group = settings.worker.app_id
    partitions = [TopicPartition(spec.name, p) for spec in group_source_topics(settings)
                  for p in range(spec.partitions)]
    unset = await _retrying(lambda: _partitions_without_offsets(settings, group, partitions), COORDINATOR_WAIT_S)
    if not unset:
        return []
    since_ms = int(((time.time() if now_s is None else now_s) - settings.kafka.new_group_lookback_s) * 1000)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        found = await consumer.offsets_for_times({tp: since_ms for tp in unset})
        recent = {tp: (hit.offset if hit else None) for tp, hit in found.items()}
        plan = plan_start_offsets(unset, recent, await consumer.beginning_offsets(unset),
                                  await consumer.end_offsets(unset))
        consumer.assign(unset)
        await consumer.commit({start.partition: start.offset for start in plan})
    except CommitFailedError:
        log.warning("new_group_not_seeded", group=group, reason="a worker of the group joined meanwhile")
        return []
    finally:
        await consumer.stop()
    _log_plan(group, plan, settings.kafka.new_group_lookback_s)
    return plan


async def _partitions_without_offsets(settings: Settings, group: str,
                                      partitions: list[TopicPartition]) -> list[TopicPartition]:
    """Those of ``partitions`` the group has no committed offset for; none while the group has members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        described = (await admin.describe_consumer_groups([group]))[0].to_object()["groups"][0]
        if described["error_code"]:
            raise for_code(described["error_code"])(f"cannot describe consumer group {group}")
        if described["state"] not in _INACTIVE_GROUP_STATES:
            log.info("new_group_not_seeded", group=group, state=described["state"],
                     reason="the group has members; they keep its offsets")
            return []
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return [tp for tp in partitions if tp not in committed or committed[tp].offset < 0]


async def _retrying(call: Callable[[], Awaitable[list[TopicPartition]]], within_s: float) -> list[TopicPartition]:
    """``call()``, again while it fails with a retriable Kafka error, for at most ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            log.info("new_group_waiting_for_coordinator", error=type(exc).__name__)
        await asyncio.sleep(_RETRY_EVERY_S)


def _log_plan(group: str, plan: list[StartOffset], lookback_s: float) -> None:
    """One line per topic: where each partition starts and how many stale records it skips."""
    for topic in sorted({start.partition.topic for start in plan}):
        starts = [start for start in plan if start.partition.topic == topic]
        log.info("new_group_start_offsets", group=group, topic=topic, lookback_s=lookback_s,
                 offsets=" ".join(f"p{s.partition.partition}@{s.offset}" for s in starts),
                 stale_skipped=sum(s.skipped for s in starts), recent_kept=sum(s.kept for s in starts))
