"""What aiokafka itself does on ``seek_to_committed`` when the committed offset is 0 (the reference
behaviour ``SafeCommitConsumer.seek_to_committed`` makes up for): it does not seek, so a consumer whose
fetched batch was thrown away stays past it."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import BOOTSTRAP

pytestmark = pytest.mark.kafka


async def test_aiokafka_seek_to_committed_does_not_seek_to_offset_0(kafka_and_redis):
    topic, group = f"seek-test-{uuid.uuid4().hex[:8]}", f"seek-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    tp = TopicPartition(topic, 0)
    try:
        await producer.start()
        for i in range(3):
            await producer.send_and_wait(topic, f"m{i}".encode())
        await consumer.start()
        consumer.assign([tp])
        await consumer.commit({tp: 0})
        fetched = await consumer.getmany(tp, timeout_ms=5000)
        assert [r.offset for r in fetched[tp]] == [0, 1, 2]
        assert await consumer.seek_to_committed() == {tp: 0}
        assert await consumer.position(tp) == 3, "aiokafka now seeks to a committed 0: reseek_targets can go"
        await consumer.commit({tp: 1})
        await consumer.seek_to_committed()
        assert await consumer.position(tp) == 1  # above 0 it does seek
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()
