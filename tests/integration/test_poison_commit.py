"""Poison through the broker into a real worker (issue 19): each poison ends in one dead letter with its
original bytes, the requests behind it are answered, and the group's committed offset passes it; a
recent answer is never re-emitted to a reply_to the sender may not name; a lone-surrogate user_id is
refused before any provider is called.

On main a 5,000-digit integer raised out of intake and out of its failure path: no dead letter, and the
partition's commit stayed at that offset for good (everything behind it answered again on every restart).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from llmrouter.simulator import SimProfile
from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from tests.conftest import BOOTSTRAP, SimulatorThread, isolated_settings, read_topic_to_end, sim_provider, \
    start_worker

pytestmark = pytest.mark.kafka
PARTITION = 1  # every message of the mix goes to this partition of llm.requests.normal, in order
COMMIT_WAIT_S = 30.0


@pytest.fixture(scope="module")
def sims():
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0)) as thread:
        yield thread


@pytest.fixture(scope="module")
def worker(sims, kafka_and_redis, tiny_model_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("poison-commit")
    settings, path = isolated_settings(directory, tiny_model_dir, local_config={"enabled": False},
                                       providers={"sim": sim_provider(sims.sims[0])}, fallback_chain=["sim"])
    proc = start_worker(path, settings, directory / "worker.log")
    yield proc
    proc.stop()
    print(proc.log_tail(30))


def poisons() -> dict[str, bytes]:
    """The issue's poison mix, each a value as upstream would produce it."""
    truncated = Codec().encode_avro("LLMRequest", {"request_id": f"cut-{uuid.uuid4()}", "prompt": "p" * 40})[:-25]
    return {
        "5,000-digit integer": b'{"request_id": "' + uuid.uuid4().hex.encode() + b'", "prompt": "p", '
                               b'"max_tokens": ' + b"9" * 5_000 + b"}",
        "100,000-deep nesting": b'{"request_id": "deep", "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "not UTF-8": b'{"request_id": "\xff\xfe", "prompt": "\xc3\x28"}',
        "truncated Avro": truncated,
        "wrong-typed fields": json.dumps({"request_id": f"typed-{uuid.uuid4()}", "prompt": ["p"],
                                          "max_tokens": "many", "stream": "yes"}).encode(),
    }


async def committed(group: str, tp: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        meta = (await admin.list_consumer_group_offsets(group, partitions=[tp])).get(tp)
    finally:
        await admin.close()
    return meta.offset if meta is not None and meta.offset >= 0 else None


async def test_each_poison_is_one_dead_letter_the_rest_is_answered_and_the_commit_passes_it(worker):
    """The mix into one partition, a valid request after each poison: one dead letter per poison holding
    its bytes, every valid one answered, and the group's committed offset reaches the partition's end."""
    settings = worker.settings
    topic = settings.topic("llm.requests.normal")
    tp = TopicPartition(topic, PARTITION)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", max_request_size=2_000_000)
    mix = poisons()
    async with RouterClient(settings) as client:
        await producer.start()
        try:
            good, offsets = [], {}
            for kind, value in mix.items():
                sent = await producer.send_and_wait(topic, value, partition=PARTITION)
                offsets[kind] = sent.offset
                rid = f"good-{uuid.uuid4()}"
                await producer.send_and_wait(topic, json.dumps({"request_id": rid, "prompt": f"after {kind} {rid}",
                                                                "max_tokens": 4}).encode(), partition=PARTITION)
                good.append(rid)
            end = sent.offset + 2  # the last good request's offset + 1
        finally:
            await producer.stop()
        collected = await client.wait_for(good, timeout_s=60, dead_letters=len(mix))
        await client.read_to_end()

        group, last = settings.worker.app_id, None
        deadline = time.monotonic() + COMMIT_WAIT_S
        while (last := await committed(group, tp)) != end and time.monotonic() < deadline:
            await asyncio.sleep(0.5)  # the next poll of the committed offset (faust commits every few seconds)

    assert last == end, f"committed offset {last}, want {end}; poisons at {offsets}"
    for rid in good:
        (result,) = collected.results[rid]
        assert result.record["status"] == "ok", result.record
    for kind, value in mix.items():
        letters = [letter for letter in collected.dead_letters if letter["original_value"] == value]
        assert len(letters) == 1, (kind, len(letters))
        assert (letters[0]["source_partition"], letters[0]["source_offset"]) == (PARTITION, offsets[kind]), kind
        assert letters[0]["error_code"] == ("invalid_request" if kind == "wrong-typed fields" else "undecodable")


async def test_a_resent_request_may_not_have_its_recent_answer_written_into_the_flags_topic(worker):
    """A request answered from the cache at intake, sent again with the same request_id and reply_to
    naming llm.router.flags: the resend gets the reply_to_not_allowed refusal on llm.results, and
    nothing with its key lands on the flags topic (compaction would erase a real flag under it)."""
    settings = worker.settings
    flags = settings.topic("llm.router.flags")
    prompt = f"cache me {uuid.uuid4()}"
    async with RouterClient(settings) as client:
        first = await client.send({"prompt": prompt, "max_tokens": 4})
        await client.wait_for([first], timeout_s=30)
        rid, deadline = None, time.monotonic() + 30
        while rid is None and time.monotonic() < deadline:  # until the answer is in the cache (stored after delivery)
            candidate = await client.send({"prompt": prompt, "max_tokens": 4})
            (result,) = (await client.wait_for([candidate], timeout_s=30)).results[candidate]
            rid = candidate if result.record.get("route") == "cache" else None
        assert rid is not None, "no request was answered from the cache"
        await client.send({"request_id": rid, "prompt": prompt, "max_tokens": 4, "reply_to": flags})
        collected = await client.wait_for([rid], timeout_s=30, results_each=2)

    refusal = collected.results[rid][1].record
    assert (refusal["status"], refusal["error_code"]) == ("rejected", "reply_to_not_allowed")
    on_flags = await read_topic_to_end(flags, 1, want=set(), timeout_s=10)
    assert rid not in on_flags


async def test_a_lone_surrogate_user_id_is_refused_before_any_provider_is_called(worker, sims):
    """A user_id of JSON's "\\ud800" raised in the ledger's settle after the provider was paid, and every
    replay paid again: now one dead letter and one error result naming the field, and no provider call."""
    settings = worker.settings
    calls_before = sims.call(sims.sims[0].stats)["requests"]["openai"]
    rid = f"surrogate-{uuid.uuid4()}"
    value = json.dumps({"request_id": rid, "prompt": f"new prompt {rid}", "user_id": "\ud800"}).encode()
    async with RouterClient(settings) as client:
        await client.send_raw(value)
        try:
            collected = await client.wait_for([rid], timeout_s=30, dead_letters=1)
        except TimeoutError:
            collected = client.collected
        calls_after = sims.call(sims.sims[0].stats)["requests"]["openai"]

    assert calls_after == calls_before, "the provider was called"
    (result,) = collected.results[rid]
    assert (result.record["status"], result.record["error_code"]) == ("error", "invalid_request")
    assert result.record["error_message"].startswith("user_id is not valid Unicode text")
    assert [letter["original_value"] for letter in collected.dead_letters] == [value]
