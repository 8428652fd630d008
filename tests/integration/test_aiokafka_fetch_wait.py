"""What aiokafka itself does with a busy partition whose fetched records are not consumed yet (the
reference behaviour ``worker.fetch_max_wait_ms`` is there for): once they are older than its prefetch
backoff (100 ms) it fetches the other partitions without it, one fetch at a time per broker, and the
broker holds a fetch of idle partitions for the whole ``fetch_max_wait_ms``. A record arriving meanwhile
in the busy partition waits for that fetch to end, however soon the first records are consumed. faust
builds its worker consumer with 1,500 ms; the router sets 20 ms (``ShortFetchWaitThread``)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from llmrouter.runtime.faust_app import RouterApp
from llmrouter.runtime.kafka import ShortFetchWaitThread
from tests.conftest import BOOTSTRAP

pytestmark = pytest.mark.kafka


async def second_record_delay_s(fetch_max_wait_ms: int) -> float:
    """Two partitions, p1 idle. r1 reaches p0 and is fetched, and not consumed until aiokafka sends a fetch
    of p1 alone; then r2 reaches p0 and r1 is consumed. How long after its send r2 comes out of ``getmany``."""
    topic = f"fetch-wait-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, fetch_max_wait_ms=fetch_max_wait_ms)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    try:
        await producer.start()
        await consumer.start()
        consumer.assign([p0, p1])
        await consumer.seek_to_end(p0, p1)
        for tp in (p0, p1):
            await consumer.position(tp)
        await producer.send_and_wait(topic, b"r1", partition=0)
        fetcher = consumer._fetcher
        deadline = time.monotonic() + 10
        while not fetch_of_p1_alone_in_flight(fetcher, p0):
            assert time.monotonic() < deadline, "r1 was never fetched, or no fetch of p1 alone was sent"
            await asyncio.sleep(0.005)
        sent = time.monotonic()
        await producer.send_and_wait(topic, b"r2", partition=0)
        first = await consumer.getmany(p0, timeout_ms=5000)
        assert [r.value for r in first[p0]] == [b"r1"]
        second = await consumer.getmany(p0, timeout_ms=5000)
        assert [r.value for r in second[p0]] == [b"r2"]
        return time.monotonic() - sent
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()


def fetch_of_p1_alone_in_flight(fetcher, p0: TopicPartition) -> bool:
    """r1 is buffered (not consumed) and past its prefetch backoff, and a fetch is in flight: one sent after
    the backoff, so without p0. (While r1's own fetch is being completed, r1 is buffered and that fetch still
    counts as in flight, but the backoff has not run out: not that one.)"""
    buffered = fetcher._records.get(p0)
    return buffered is not None and buffered.calculate_backoff() == 0 and bool(fetcher._in_flight)


async def test_a_record_behind_an_unconsumed_one_waits_out_the_fetch_held_for_idle_partitions(kafka_and_redis):
    """faust's 1,500 ms: r2 comes about 1.5 s after its send; 20 ms: within a fraction of that."""
    held = await second_record_delay_s(1500)
    short = await second_record_delay_s(20)
    assert held > 1.0, f"aiokafka no longer holds the busy partition behind a held fetch ({held:.3f} s)"
    assert short < 0.5, f"{short:.3f} s"


async def test_the_worker_consumer_is_built_with_the_apps_fetch_wait():
    """``RouterApp.fetch_max_wait_ms`` reaches the aiokafka consumer faust builds (it reads it at start)."""
    app = RouterApp("fetch-wait-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.fetch_max_wait_ms = 37
    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, ShortFetchWaitThread)
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == 37
