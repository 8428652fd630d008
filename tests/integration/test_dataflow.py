"""The request -> result dataflow through a real broker, RocksDB tables and the
local ONNX model, driven by plain aiokafka clients as an upstream system would.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import avro.io
import avro.schema
import pytest
from aiokafka import AIOKafkaProducer

from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from llmrouter.core.stored import StoredAnswer
from llmrouter.schemas import raw as raw_schema
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import SimulatorThread, isolated_settings, read_configs, read_topic_to_end, sim_provider, start_worker

pytestmark = pytest.mark.kafka
BOOTSTRAP = "127.0.0.1:9092"
WINDOW_S = 5.0  # the forgetful worker's idempotency window: long enough to re-emit within it on a loaded machine


def avro_single_object(record: dict) -> bytes:
    """Avro single-object encoding made with the reference `avro` library, not ours."""
    raw = raw_schema("LLMRequest")
    schema = avro.schema.parse(json.dumps(raw))
    full = {f["name"]: f.get("default") for f in raw["fields"]} | record  # this writer does not fill defaults
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(full, avro.io.BinaryEncoder(body))
    return b"\xc3\x01" + schema.fingerprint("CRC-64-AVRO") + body.getvalue()  # its bytes as they are


async def test_avro_and_json_requests_each_get_exactly_one_result(worker):
    """A request in Avro single-object encoding and one in JSON, produced by a plain
    aiokafka producer, each get exactly one `ok` result on llm.results, keyed by request_id."""
    settings = worker.settings
    avro_id, json_id = f"avro-{uuid.uuid4()}", f"json-{uuid.uuid4()}"
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("llm.requests.high"), avro_single_object(
            {"request_id": avro_id, "prompt": "Say hello", "max_tokens": 8}))
        await producer.send_and_wait(settings.topic("llm.requests.low"), json.dumps(
            {"request_id": json_id, "prompt": "Say goodbye", "max_tokens": 8}).encode(), key=b"whatever")
    finally:
        await producer.stop()

    results = await read_topic_to_end(settings.topic("llm.results"), settings.kafka.partitions, want={avro_id, json_id})
    codec = Codec()
    assert len(results[avro_id]) == 1 and len(results[json_id]) == 1
    avro_result = codec.decode("LLMResult", results[avro_id][0].value)
    json_result = codec.decode("LLMResult", results[json_id][0].value)
    assert results[avro_id][0].value[:2] == b"\xc3\x01"  # results are Avro single-object by default
    assert (avro_result["status"], avro_result["priority"], avro_result["provider"]) == ("ok", "high", "local")
    assert (json_result["status"], json_result["priority"], json_result["route"]) == ("ok", "low", "local")
    assert 1 <= avro_result["completion_tokens"] <= 8 and avro_result["prompt_tokens"] > 0
    assert avro_result["attempts"][0]["provider"] == "local" and avro_result["attempts"][0]["outcome"] == "ok"
    assert avro_result["route_reason"] == "simple: task general, prompt 9 <= 2000 chars, max_tokens 8 <= 256: " \
                                          "local model first"


async def test_bad_input_goes_to_dlq_with_original_bytes_and_the_stream_goes_on(worker):
    """Undecodable bytes and an invalid request land in llm.dlq with their original bytes,
    headers and a reason; the invalid one (it names a request_id) also gets an `error`
    result; the request produced after them is still served."""
    settings = worker.settings
    garbage = b"\x00\xffthis is not a request"
    invalid = json.dumps({"request_id": f"invalid-{uuid.uuid4()}", "max_tokens": 4}).encode()
    invalid_id = json.loads(invalid)["request_id"]
    async with RouterClient(settings) as client:
        await client.send_raw(garbage, priority="normal", key=b"k1")
        await client.send_raw(invalid, priority="normal")
        good_id = await client.send({"prompt": "still there?", "max_tokens": 4}, priority="normal")
        collected = await client.wait_for([good_id, invalid_id], timeout_s=60, dead_letters=2)

    assert collected.results[good_id][0].record["status"] == "ok"
    invalid_result = collected.results[invalid_id][0].record
    assert (invalid_result["status"], invalid_result["error_code"]) == ("error", "invalid_request")
    assert "neither a prompt nor chat messages" in invalid_result["error_message"]
    by_value = {letter["original_value"]: letter for letter in collected.dead_letters}
    assert by_value[garbage]["error_code"] == "undecodable"
    assert "neither Avro single-object encoding" in by_value[garbage]["reason"]
    assert by_value[garbage]["original_key"] == b"k1"
    assert by_value[garbage]["source_topic"] == settings.topic("llm.requests.normal")
    assert by_value[garbage]["source_offset"] >= 0
    assert by_value[invalid]["request_id"] == invalid_id
    assert by_value[invalid]["error_code"] == "invalid_request"


async def test_a_request_delivered_again_re_emits_the_stored_result_without_a_model_call(worker):
    """The same request_id sent twice: the second result is the stored one (same bytes,
    marked with the replay header) and the local model was called once."""
    calls_before = worker.metric("llmrouter_provider_calls_total", provider="local", outcome="ok")
    request = {"request_id": f"dup-{uuid.uuid4()}", "prompt": "only once please", "max_tokens": 6}
    async with RouterClient(worker.settings) as client:
        await client.send(request, priority="critical")
        await client.wait_for([request["request_id"]], timeout_s=60)
        await client.send(request, priority="low", encoding="avro")
        await client.wait_for([request["request_id"]], timeout_s=60, results_each=2)
    first, second = client.collected.results[request["request_id"]]
    assert not first.replay and second.replay
    assert second.raw == first.raw
    assert worker.metric("llmrouter_provider_calls_total", provider="local", outcome="ok") == calls_before + 1
    status, stored = worker.get_json(f"/requests/{request['request_id']}/")
    assert status == 200 and stored["text"] == first.record["text"]


async def test_stored_answers_and_the_ledger_are_shown_only_with_the_admin_key(worker):
    """/requests/{id}/ is a user's whole answer and /ledger/ names users and their spend (issue 19): without the
    admin key, or with another, 401 and nothing of either; with it, the stored answer and the accounts. The views
    that show the router's own state stay open."""
    request = {"request_id": f"keyed-{uuid.uuid4()}", "prompt": "a private question", "max_tokens": 6,
               "user_id": "alice"}
    async with RouterClient(worker.settings) as client:
        await client.send(request, priority="high")
        await client.wait_for([request["request_id"]], timeout_s=60)
    answer = client.collected.results[request["request_id"]][0].record["text"]
    for path in (f"/requests/{request['request_id']}/", "/ledger/", "/ledger/?all=1"):
        status, reply = worker.get_json(path, admin_key=False)
        assert status == 401 and "X-Admin-Key" in reply["error"], (path, status, reply)
        assert set(reply) == {"error"} and "alice" not in json.dumps(reply)
        wrong = urllib.request.Request(f"{worker.base_url}{path}", headers={"X-Admin-Key": "not-the-key"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=5)
        assert refused.value.code == 401
    status, stored = worker.get_json(f"/requests/{request['request_id']}/")
    assert status == 200 and stored["text"] == answer
    status, ledger = worker.get_json("/ledger/")
    assert status == 200 and "accounts" in ledger
    assert worker.get_json("/providers/", admin_key=False)[0] == 200


async def test_copies_of_a_request_arriving_together_call_the_model_once(worker):
    """Three copies of one request on three priorities at once: one model call, one
    answer, two re-emitted copies of it."""
    calls_before = worker.metric("llmrouter_provider_calls_total", provider="local", outcome="ok")
    request = {"request_id": f"burst-{uuid.uuid4()}", "prompt": "all at once", "max_tokens": 16}
    async with RouterClient(worker.settings) as client:
        for priority in ("critical", "normal", "low"):
            await client.send(request, priority=priority)
        await client.wait_for([request["request_id"]], timeout_s=60, results_each=3)
    received = client.collected.results[request["request_id"]]
    assert sorted(r.replay for r in received) == [False, True, True]
    assert len({r.raw for r in received}) == 1
    assert worker.metric("llmrouter_provider_calls_total", provider="local", outcome="ok") == calls_before + 1


async def test_a_streamed_request_sends_chunks_that_join_to_the_result_text(worker):
    """stream=true: StreamChunks on llm.stream, seq 0..n, the last one final, joined equal to the result."""
    async with RouterClient(worker.settings) as client:
        rid = await client.send({"prompt": "stream this", "max_tokens": 12, "stream": True}, priority="high")
        collected = await client.wait_for([rid], timeout_s=60)
    chunks = sorted(collected.chunks[rid], key=lambda c: c["seq"])
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert chunks[-1]["final"] and not any(c["final"] for c in chunks[:-1])
    assert "".join(c["delta"] for c in chunks) == collected.results[rid][0].record["text"]


async def test_a_result_goes_to_the_requests_reply_to_topic(worker):
    """reply_to names the topic the result is sent to instead of llm.results (an allowed one:
    `worker.reply_to_topics`, by default llm.results and llm.replies.*)."""
    reply_topic = worker.settings.topic("llm.replies.team-a")
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(reply_topic, 1, 1)])
    await admin.close()
    async with RouterClient(worker.settings, results_topic=reply_topic) as client:
        rid = await client.send({"prompt": "reply elsewhere", "max_tokens": 4, "reply_to": reply_topic})
        collected = await client.wait_for([rid], timeout_s=60)
    assert collected.results[rid][0].record["status"] == "ok"


async def test_requests_over_a_limit_are_rejected_with_a_clear_code(worker):
    """Parameters over a limit or an unknown provider give a `rejected` result, never a silent
    drop; a request no configured provider may serve gets `error` and a replayable DLQ entry."""
    async with RouterClient(worker.settings) as client:
        too_many = await client.send({"prompt": "x", "max_tokens": 100_000})
        unknown = await client.send({"prompt": "x", "providers": ["nonesuch"]})
        no_chain = await client.send({"prompt": "x", "providers": ["together"]})
        collected = await client.wait_for([too_many, unknown, no_chain], timeout_s=60, dead_letters=1)
    records = {rid: collected.results[rid][0].record for rid in (too_many, unknown, no_chain)}
    assert (records[too_many]["status"], records[too_many]["error_code"]) == ("rejected", "max_tokens_too_large")
    assert (records[unknown]["status"], records[unknown]["error_code"]) == ("rejected", "unknown_provider")
    assert (records[no_chain]["status"], records[no_chain]["error_code"]) == ("error", "all_providers_unavailable")
    assert "TOGETHER_API_KEY" in records[no_chain]["error_message"]
    (letter,) = [d for d in collected.dead_letters if d["request_id"] == no_chain]
    assert letter["error_code"] == "all_providers_unavailable"
    replayable = json.loads(letter["original_value"])  # a JSON LLMRequest: produce it again to retry
    assert (replayable["request_id"], replayable["providers"]) == (no_chain, ["together"])


async def test_health_reports_providers_and_redis(worker):
    """/health says ready, lists the local model as available and an unconfigured cloud provider with its
    reason; /health/live/ and /health/ready/ both answer 200."""
    health = worker.health()
    assert health["ready"] is True and health["redis"]["ok"] is True and health["not_ready_because"] == []
    assert worker.get_json("/health/live/") == (200, {"live": True})
    assert worker.get_json("/health/ready/") == (200, {"ready": True, "not_ready_because": []})
    assert health["providers"]["local"] == {"available": True}
    assert "HF_TOKEN" in health["providers"]["huggingface"]["reason"]


async def test_the_work_view_shows_each_partition_the_agents_read(worker):
    """/work/ lists the jobs under way (none when idle) and every request and accepted partition the
    worker owns, each caught up (committed = end) and not counted as stalled."""
    async with RouterClient(worker.settings) as client:
        await client.wait_for([await client.send({"prompt": "count me", "max_tokens": 2})], timeout_s=60)
    deadline = time.monotonic() + 30
    while True:
        status, work = worker.get_json("/work/")
        caught_up = all(p["committed"] == p["end"] for p in work["partitions"] if p["end"])
        if caught_up or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert status == 200 and work["jobs"] == [] and caught_up, work
    topics = {p["topic"] for p in work["partitions"]}
    assert worker.settings.topic("llm.router.accepted.normal") in topics
    assert worker.settings.topic("llm.requests.critical") in topics
    assert all(p["stalled_looks"] == 0 for p in work["partitions"])


async def test_the_answered_changelog_is_compacted_and_deleted_after_the_idempotency_window(worker):
    """The `answered` changelog's topic config: compacted and deleted after `tables.idempotency_window_s` (the
    default, 7 days, here), so a recovery never brings back answers older than the window; the forgetting
    itself is shown below (test_the_answered_changelog_forgets_after_the_idempotency_window)."""
    changelog = f"{worker.settings.worker.app_id}-answered-changelog"
    configs = (await read_configs([changelog]))[changelog]
    window_ms = int(worker.settings.tables.idempotency_window_s * 1000)
    assert (configs["cleanup.policy"][0], configs["retention.ms"][0]) == ("compact,delete", str(window_ms))


async def test_stored_results_are_changelogged_in_the_partition_of_their_request_id(worker):
    """Every `answered` changelog record sits in the partition its request_id hashes to, the
    same partition as the accepted topic it was answered from, so a rebalance moves a
    request and its stored result together; the answer is stored, then marked delivered
    once its result was sent."""
    from aiokafka.partitioner import DefaultPartitioner

    async with RouterClient(worker.settings) as client:
        run = uuid.uuid4().hex[:8]  # Redis outlives a run: a prompt of an earlier run would be a cache hit, never stored
        ids = [await client.send({"prompt": f"spread {i} {run}", "max_tokens": 2}) for i in range(6)]
        await client.wait_for(ids, timeout_s=60)
    count = worker.settings.kafka.partitions
    topic = f"{worker.settings.worker.app_id}-answered-changelog"
    changelog = await read_topic_to_end(topic, count, want=set(ids))
    deadline = time.monotonic() + 30
    while any(len(changelog.get(rid, ())) < 2 for rid in ids) and time.monotonic() < deadline:
        changelog = await read_topic_to_end(topic, count, want=set(ids))  # the delivered mark is not awaited
    partition_of = DefaultPartitioner()
    for rid in ids:
        stored, delivered = changelog[rid]  # the answer, then the same answer marked delivered
        for message in (stored, delivered):
            assert message.partition == partition_of(rid.encode(), list(range(count)), list(range(count)))
        first, last = StoredAnswer.from_bytes(stored.value), StoredAnswer.from_bytes(delivered.value)
        assert (first.delivered, last.delivered, first.result) == (False, True, last.result)


@pytest.fixture
def forgetful(kafka_and_redis, tmp_path_factory) -> Iterator[tuple[WorkerProcess, SimulatorThread]]:
    """A worker whose idempotency window is WINDOW_S, answering from a simulated provider that counts its own
    calls, with the answer cache off (a cache hit would spare a call too, and hide what the window does); stopped
    after its one test, so the module's other tests share the machine with one worker only."""
    directory = tmp_path_factory.mktemp("forgetful")
    with SimulatorThread(SimProfile(latency_ms=10, token_delay_ms=0)) as sims:
        settings, path = isolated_settings(directory, directory / "no-model", local_config={"enabled": False},
                                           providers={"sim": sim_provider(sims.sims[0])}, fallback_chain=["sim"],
                                           tables={"idempotency_window_s": WINDOW_S}, cache={"enabled": False})
        worker = start_worker(path, settings, directory / "worker.log")
        try:
            yield worker, sims
        finally:
            worker.stop()


async def test_the_answered_changelog_forgets_after_the_idempotency_window(forgetful):
    """With a window of a few seconds: a request_id sent again within the window gets its stored result
    re-emitted (same bytes, a replay) and the provider sees no second call; sent again once its stored answer
    is older than the window, it is served anew (one more call counted by the provider, a fresh result, a new
    stored answer). The `answered` changelog is compacted and deleted after the same window, so a recovery
    never brings back answers older than it."""
    worker, sims = forgetful
    (sim,) = sims.sims

    def calls() -> int:
        return sims.call(sim.stats)["requests"]["openai"]

    request = {"request_id": f"window-{uuid.uuid4()}", "prompt": "remember me briefly", "max_tokens": 6}
    async with RouterClient(worker.settings) as client:
        await client.send(request)
        await client.wait_for([request["request_id"]], timeout_s=60)
        status, stored = worker.get_json(f"/requests/{request['request_id']}/")
        assert status == 200 and calls() == 1
        await client.send(request)
        await client.wait_for([request["request_id"]], timeout_s=60, results_each=2)
        re_emitted_after_s = time.time() - stored["stored_at_ms"] / 1000
        deadline = time.monotonic() + WINDOW_S + 30
        while time.time() * 1000 - stored["stored_at_ms"] <= WINDOW_S * 1000:  # the stored answer's age, by the
            assert time.monotonic() < deadline                                  # clock the worker judges it by
            await asyncio.sleep(0.1)
        await client.send(request)
        await client.wait_for([request["request_id"]], timeout_s=60, results_each=3)
    first, again, anew = client.collected.results[request["request_id"]]
    assert re_emitted_after_s < WINDOW_S, "too slow to show the window: the second copy came after it"
    assert again.replay and again.raw == first.raw
    assert not anew.replay and anew.raw != first.raw and anew.record["status"] == "ok"
    assert calls() == 2
    status, stored_anew = worker.get_json(f"/requests/{request['request_id']}/")
    assert status == 200 and stored_anew["stored_at_ms"] > stored["stored_at_ms"] + WINDOW_S * 1000

    changelog = f"{worker.settings.worker.app_id}-answered-changelog"
    configs = (await read_configs([changelog]))[changelog]
    assert (configs["cleanup.policy"][0], configs["retention.ms"][0]) == ("compact,delete", str(int(WINDOW_S * 1000)))
