"""The consumer's commit rule, driven through faust's own consumer class (no broker):
what ``SafeCommitConsumer`` would commit as messages are fetched, delivered and acked
in any order. faust's fetcher and stream do the fetching and delivering in the
worker; here the test plays them.

These are white-box tests of faust-streaming 0.15.3 internals on purpose: an upgrade
that changes ``_new_offset`` / ``_filter_committable_offsets`` / ``ack`` fails here."""

from __future__ import annotations

import pytest
from faust.types import TP, Message

from llmrouter.runtime.faust_app import RouterApp
from llmrouter.runtime.kafka import SafeCommitConsumer, reseek_targets

TOPIC = "llm.router.accepted.normal"
TP0 = TP(TOPIC, 0)


@pytest.fixture
def consumer():
    app = RouterApp("safe-commit-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.consumer_generation_id = 7
    consumer = app.consumer
    assert isinstance(consumer, SafeCommitConsumer)
    app.topics.acks_enabled_for = lambda topic: True  # what faust answers for a topic an agent reads
    return consumer


def fetch(consumer, *offsets: int, seek: int | None = None) -> None:
    """What the fetcher does: a seek (to the committed offset), then records returned in order."""
    consumer._ledgers[TP0].on_seek(seek)
    consumer._ledgers[TP0].on_fetched(offsets)


def deliver(consumer, offset: int, *, generation: int = 7) -> Message:
    """What faust's stream does when it hands a message to an agent: track it as unacked."""
    message = Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=TP0, generation_id=generation)
    message.tracked = True
    consumer.unacked.add(message)
    return message


def committable(consumer) -> int | None:
    return consumer._filter_committable_offsets([TP0]).get(TP0)


def test_a_slow_message_at_the_head_is_never_committed_past(consumer):
    """Offset 0 in flight, 1..60 acked: faust 0.15.3 would commit 61; we commit nothing until 0 is done."""
    fetch(consumer, *range(61))
    messages = [deliver(consumer, offset) for offset in range(61)]
    for message in messages[1:]:
        consumer.ack(message)
    assert committable(consumer) is None
    consumer.ack(messages[0])
    assert committable(consumer) == 61


def test_one_in_flight_message_right_after_the_committed_offset_holds_the_commit(consumer):
    """Committed 100 (the next to read), 100 in flight, 101..104 acked: nothing past 100."""
    consumer._committed_offset[TP0] = 100
    fetch(consumer, *range(100, 105), seek=100)
    head, *rest = [deliver(consumer, offset) for offset in range(100, 105)]
    for message in rest:
        consumer.ack(message)
    assert committable(consumer) is None
    consumer.ack(head)
    assert committable(consumer) == 105


def test_acks_in_any_order_commit_only_the_finished_prefix(consumer):
    """10 messages finishing in a shuffled order: each commit point is the first unfinished offset."""
    fetch(consumer, *range(10), seek=0)
    messages = [deliver(consumer, offset) for offset in range(10)]
    points = []
    for offset in [3, 1, 0, 7, 2, 9, 4, 8, 5, 6]:
        consumer.ack(messages[offset])
        point = committable(consumer)
        if point is not None:
            consumer._committed_offset[TP0] = point
        points.append(consumer._committed_offset[TP0])
    assert points == [None, None, 2, 2, 4, 4, 5, 5, 6, 10]


def test_an_ack_from_before_the_last_rebalance_does_not_count(consumer):
    """faust acks stale events it skips; offset 11 acked from generation 6 must not let a
    commit pass 11 delivered again in generation 7."""
    consumer._committed_offset[TP0] = 10
    fetch(consumer, 10, 11, seek=10)
    stale = deliver(consumer, 11, generation=6)
    again = [deliver(consumer, 10), deliver(consumer, 11)]
    consumer.ack(stale)
    consumer.ack(again[0])
    assert committable(consumer) == 11


def test_a_message_fetched_but_never_delivered_holds_the_commit(consumer):
    """faust dropped 300 between the fetch and the agent (a seek racing the fetcher): 301 done,
    300 never tracked nor acked. The commit stays at 300, so it is read again."""
    consumer._committed_offset[TP0] = 300
    fetch(consumer, 300, 301, seek=300)
    consumer.ack(deliver(consumer, 301))
    assert committable(consumer) is None


def test_offsets_the_fetcher_skipped_are_not_waited_for(consumer):
    """Transaction markers at 3 and 4: fetched 0, 1, 2, 5 in a row; all done -> commit 6."""
    fetch(consumer, 0, 1, 2, 5, seek=0)
    for offset in (0, 1, 2, 5):
        consumer.ack(deliver(consumer, offset))
    assert committable(consumer) == 6


def test_the_seeks_aiokafka_leaves_out_are_made():
    """aiokafka's seek_to_committed seeks only to offsets above 0; we seek the rest: to 0 where 0 is
    committed, to the earliest offset where nothing is, and leave the others to aiokafka."""
    tp1, tp2, tp3 = TP(TOPIC, 1), TP(TOPIC, 2), TP(TOPIC, 3)
    assert reseek_targets({TP0: 0, tp1: None, tp2: 17, tp3: None}, {tp1: 5}) == {TP0: 0, tp1: 5, tp3: 0}
