"""Where a new consumer group starts in each partition without a committed offset."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, GroupCoordinatorNotAvailableError

from llmrouter.runtime.new_group import _retrying, plan_start_offsets
from llmrouter.config.settings import load_settings
from llmrouter.topics import group_source_topics

P0, P1, P2 = (TopicPartition("t", p) for p in range(3))


def test_a_partition_starts_at_its_first_recent_record_and_skips_the_stale_ones():
    """offsets_for_times found offset 7 for the lookback: start there, 5 stale skipped, 3 kept."""
    [start] = plan_start_offsets([P0], recent={P0: 7}, firsts={P0: 2}, ends={P0: 10})
    assert (start.partition, start.offset, start.skipped, start.kept) == (P0, 7, 5, 3)


def test_a_partition_with_nothing_recent_starts_at_its_end():
    """No record within the lookback (offsets_for_times gives None): start at the end, all skipped."""
    [start] = plan_start_offsets([P1], recent={P1: None}, firsts={P1: 0}, ends={P1: 4})
    assert (start.offset, start.skipped, start.kept) == (4, 4, 0)


def test_only_the_partitions_without_a_committed_offset_are_planned():
    """Partitions the caller did not list (they have a committed offset) get no start offset."""
    plan = plan_start_offsets([P0, P2], recent={P0: 0, P2: None}, firsts={P0: 0, P2: 0}, ends={P0: 3, P2: 0})
    assert [(s.partition, s.offset) for s in plan] == [(P0, 0), (P2, 0)]


def test_the_group_reads_the_request_accepted_health_and_outcomes_topics_only():
    """The group's sources: llm.requests.*, llm.router.accepted.*, the providers' health reports and the outcome
    counts, not outputs or llm.providers (a new group skips stale reports as it skips stale requests)."""
    names = [spec.name for spec in group_source_topics(load_settings(env={}))]
    assert names == [f"llm.requests.{p}" for p in ("critical", "high", "normal", "low")] + \
                    [f"llm.router.accepted.{p}" for p in ("critical", "high", "normal", "low")] + \
                    ["llm.router.health", "llm.router.outcomes"]


def test_the_default_lookback_is_ten_minutes():
    """About ten times the default request timeout (60 s)."""
    s = load_settings(env={})
    assert s.kafka.new_group_lookback_s == 600 == 10 * s.limits.default_timeout_s


async def test_a_coordinator_not_ready_yet_is_waited_for_and_other_errors_are_not():
    """A fresh cluster answers "coordinator not available" while it creates __consumer_offsets:
    retried; a non-retriable error is raised at once."""
    calls: list[int] = []

    async def not_ready_once() -> list[TopicPartition]:
        calls.append(1)
        if len(calls) == 1:
            raise GroupCoordinatorNotAvailableError("creating __consumer_offsets")
        return [P0]

    assert await _retrying(not_ready_once, within_s=10) == [P0] and len(calls) == 2

    async def refused() -> list[TopicPartition]:
        calls.append(1)
        raise GroupAuthorizationFailedError("no")

    with pytest.raises(GroupAuthorizationFailedError):
        await _retrying(refused, within_s=10)
    assert len(calls) == 3
