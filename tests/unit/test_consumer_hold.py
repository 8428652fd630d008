"""The consumer's hold on whole topics (the priority backpressure), through faust's own consumer class.

faust's fetcher thread is replaced by a recorder of what each fetch asked for; the
rest is faust-streaming 0.15.3's consumer, whose own pause bookkeeping the hold
must outlive (white-box on purpose, like test_safe_commit.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faust.types import TP

from llmrouter.runtime.faust_app import RouterApp

LOW, NORMAL, CRITICAL = "llm.router.accepted.low", "llm.router.accepted.normal", "llm.router.accepted.critical"
OWNED = {TP(topic, p) for topic in (LOW, NORMAL, CRITICAL) for p in (0, 1)}


@pytest.fixture
def consumer():
    app = RouterApp("hold-test", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    asked: list[set[TP]] = []

    async def getmany(active_partitions, timeout):
        asked.append(set(active_partitions))
        return {}

    consumer._thread = SimpleNamespace(getmany=getmany, assignment=lambda: set(OWNED))
    consumer.asked = asked
    return consumer


async def test_a_held_topic_is_not_fetched_and_the_others_are(consumer):
    """Holding low: a fetch of every owned partition asks for normal and critical only."""
    consumer.hold({LOW})
    await consumer._getmany(set(OWNED), 0.01)
    assert consumer.asked == [{tp for tp in OWNED if tp.topic != LOW}]
    assert consumer.held_partitions() == {TP(LOW, 0), TP(LOW, 1)}


async def test_a_hold_outlives_faust_resuming_every_partition_after_a_rebalance(consumer):
    """faust pauses every assigned partition on assignment and resumes them all at the end of recovery;
    the fetch that follows still leaves the held topic out. Released, it is fetched again."""
    consumer.hold({LOW, NORMAL})
    consumer.pause_partitions(OWNED)  # what faust's _on_partitions_assigned does
    consumer.resume_partitions(OWNED)  # what the recovery does once the tables are ready
    await consumer._getmany(consumer._get_active_partitions(), 0.01)
    assert consumer.asked[-1] == {TP(CRITICAL, 0), TP(CRITICAL, 1)}
    consumer.hold(set())
    await consumer._getmany(consumer._get_active_partitions(), 0.01)
    assert consumer.asked[-1] == OWNED and consumer.held_partitions() == set()


async def test_when_every_partition_to_fetch_is_held_nothing_is_fetched_at_all(consumer):
    """aiokafka reads an empty set of partitions as "all of them": the consumer must not ask."""
    consumer.hold({LOW})
    assert await consumer._getmany({TP(LOW, 0)}, 0.01) == {}
    assert consumer.asked == []
