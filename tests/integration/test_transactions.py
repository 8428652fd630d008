"""Requests of an aborted upstream transaction are never answered nor paid for (issue 19, item 9).

faust reads ``read_uncommitted`` unless it runs exactly-once; the worker's consumer reads
``read_committed``. A transactional producer writes a request and aborts; a plain request sent after
it is answered (polled for), and by then the aborted one, which comes first in the partition, has no
result.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from llmrouter.testing.settings_file import BOOTSTRAP
from llmrouter.topics import REQUESTS
from llmrouter.wire.client import RouterClient

pytestmark = pytest.mark.kafka


async def test_a_request_from_an_aborted_transaction_is_never_answered(worker):
    settings = worker.settings
    topic = settings.topic(REQUESTS.format(priority="normal"))
    aborted_id, committed_id = f"aborted-{uuid.uuid4()}", f"committed-{uuid.uuid4()}"
    async with RouterClient(settings) as client:  # reading results from now on, before anything is sent
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=f"upstream-{uuid.uuid4()}")
        await producer.start()
        try:
            await producer.begin_transaction()
            value = json.dumps({"request_id": aborted_id, "created_at_ms": int(time.time() * 1000),
                                "prompt": "never to be answered", "max_tokens": 4}).encode()
            await producer.send_and_wait(topic, value, key=b"same")  # the key: the same partition as the next
            await producer.abort_transaction()
        finally:
            await producer.stop()
        await client.send({"request_id": committed_id, "prompt": "answered", "max_tokens": 4}, key=b"same")
        collected = await client.wait_for([committed_id], timeout_s=60)
        await client.read_to_end()
    assert collected.results[committed_id][0].record["status"] == "ok"
    assert aborted_id not in collected.results, "a request its producer aborted was answered"
    assert all(letter.get("request_id") != aborted_id for letter in collected.dead_letters)
