"""Oversized requests and answers, through the real broker and a real worker (issue 19, item 4).

faust's producer refuses a record over 1,000,000 bytes (``kafka.max_record_bytes``) while the broker takes
1,048,588: a request between the two, or one whose forward is over the limit once its key and headers are
counted, used to fail its writes for ever (no result, the commit held, after every restart too); a 999 kB
``task_type``, echoed into ``route_reason``, made the stored answer too large after the provider was paid.
Each must end in a clear refusal or a dead letter, with no paid call, the worker up and the group's
committed offset past it; an answer too large to deliver becomes an ``error`` result, stored, so a
redelivery re-emits it without a second call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmrouter.simulator import SimProfile
from llmrouter.testing.ports import free_port
from llmrouter.wire.client import RouterClient
from tests.conftest import (BOOTSTRAP, SimulatorThread, committed_offset, isolated_settings, sim_provider,
                            start_worker)

pytestmark = pytest.mark.kafka
HUGE_ANSWER_CHARS = 1_100_000  # a provider's answer over the 1,000,000-byte record limit


class HugeAnswers:
    """An OpenAI-compatible endpoint whose every answer is 1.1 MB of text, counting the calls it was paid."""

    def __init__(self) -> None:
        self.calls = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="huge-answers", daemon=True)
        self._runner: web.AppRunner | None = None

    async def _completion(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        return web.json_response({
            "id": "chatcmpl-huge", "object": "chat.completion", "model": body.get("model", "huge-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * HUGE_ANSWER_CHARS},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4096, "total_tokens": 4099}})

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "huge-model", "object": "model"}]})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completion)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> HugeAnswers:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def oversize_worker(kafka_and_redis, tiny_model_dir, tmp_path_factory):
    """One worker, one partition per topic (one committed offset to watch), a simulated provider and the
    provider of huge answers."""
    directory = tmp_path_factory.mktemp("oversize")
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0)) as sims, HugeAnswers() as huge:
        settings, path = isolated_settings(
            directory, tiny_model_dir, kafka={"request_partitions": 1, "partitions": 1},
            local_config={"enabled": False}, cache={"enabled": False},
            providers={"fast": sim_provider(sims.sims[0]),
                       "huge": {"kind": "openai_compatible", "endpoint": f"http://127.0.0.1:{huge.port}/v1",
                                "api_key_env": "", "models": ["huge-model"], "timeout_s": 20}},
            fallback_chain=["fast", "huge"])
        worker = start_worker(path, settings, directory / "worker.log")
        yield worker, sims, huge
        worker.stop()
        print(worker.log_tail(30))


def padded(size: int, **fields) -> tuple[str, bytes]:
    """A JSON request of exactly ``size`` bytes: ``fields``, with the bytes to spare in ``pad`` (a field named
    by ``fields['pad_into']``: an unknown field by default, or metadata, task_type)."""
    rid = f"big-{uuid.uuid4()}"
    into = fields.pop("pad_into", "padding")
    record = {"request_id": rid, "prompt": "p", "max_tokens": 4, **fields}

    def encode(pad: str) -> bytes:
        if into == "metadata":
            return json.dumps({**record, "metadata": {"blob": pad}}).encode()
        return json.dumps({**record, into: pad}).encode()

    base = len(encode(""))
    value = encode("a" * (size - base))
    assert len(value) == size
    return rid, value


def oversized(settings) -> list[tuple[str, str, bytes, str, str]]:
    """(kind, request_id, value, what it must get, its code)."""
    out = []
    for size in (999_000, 1_000_001, 1_048_000):
        rid, value = padded(size, pad_into="metadata")  # over the record limit: refused for its size first
        out.append((f"{size} B of metadata", rid, value, "rejected",
                    "field_too_large" if size < 1_000_000 else "message_too_large"))
        rid, value = padded(size, prompt=None)
        out.append((f"{size} B without a prompt", rid, value, "dead letter + error", "invalid_request"))
    for size in (1_000_001, 1_048_000):
        rid, value = padded(size)
        out.append((f"{size} B valid", rid, value, "rejected", "message_too_large"))
    rid, value = padded(999_950)  # within the value limit; over the record limit with key, headers, overhead
    out.append(("999,950 B valid, near the limit", rid, value, "rejected", "message_too_large"))
    rid, value = padded(999_000, pad_into="task_type")
    out.append(("999 kB task_type", rid, value, "rejected", "field_too_large"))
    return out


async def end_offset(topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def wait_committed(group: str, topic: str, end: int, timeout_s: float = 30.0) -> int:
    """The group's committed offset once it reaches ``end``, or the last one seen at the deadline."""
    deadline = time.monotonic() + timeout_s
    offset = await committed_offset(group, topic)
    while offset < end and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        offset = await committed_offset(group, topic)
    return offset


async def test_oversized_requests_end_in_a_refusal_or_dead_letter_without_a_call_crash_or_stall(oversize_worker):
    """Each oversized request gets its refusal or its (truncated) dead letter and error result; the
    provider saw only the good request behind them, the worker stays up and the commit passes them all."""
    worker, sims, huge = oversize_worker
    settings = worker.settings
    sims.call(sims.sims[0].reset)
    bad = oversized(settings)
    requests_topic = settings.topic("llm.requests.normal")
    async with RouterClient(settings) as client:
        for _kind, _rid, value, _outcome, _code in bad:
            await client.send_raw(value, priority="normal")
        good = await client.send({"prompt": "good after the big ones", "max_tokens": 4})
        letters_wanted = sum(1 for b in bad if "dead letter" in b[3])
        collected = await client.wait_for([good] + [b[1] for b in bad], timeout_s=60, dead_letters=letters_wanted)

    (result,) = collected.results[good]
    assert result.record["status"] == "ok", result.record
    letters = {letter["request_id"]: letter for letter in collected.dead_letters}
    for kind, rid, value, outcome, code in bad:
        (result,) = collected.results[rid]
        want = "error" if "error" in outcome else "rejected"
        assert (result.record["status"], result.record["error_code"]) == (want, code), (kind, result.record)
        if "dead letter" not in outcome:
            assert rid not in letters, kind
            continue
        letter = letters[rid]
        assert letter["error_code"] == code, kind
        assert value.startswith(letter["original_value"]), kind
        if len(value) >= 1_000_000:  # cut to fit, and said so, with the whole original's size and hash
            assert len(letter["original_value"]) < len(value), kind
            assert hashlib.sha256(value).hexdigest() in letter["reason"], kind
            assert f"of {len(value)} bytes" in letter["reason"], kind
        else:
            assert letter["original_value"] == value, kind
    assert sims.call(sims.sims[0].stats)["requests"]["openai"] == 1  # the good request only
    assert huge.calls == 0
    assert worker.returncode is None, worker.log_tail(30)
    end = await end_offset(requests_topic)
    committed = await wait_committed(settings.worker.app_id, requests_topic, end)
    assert committed == end, f"the group's commit stayed at {committed} of {end}"


async def test_an_answer_too_large_to_deliver_is_an_error_result_stored_and_never_paid_twice(oversize_worker):
    """A provider's 1.1 MB answer: an ``error`` result ``result_too_large`` naming the limit, the worker up,
    the commit past it; the same request delivered again is answered from the stored result, no second call."""
    worker, _sims, huge = oversize_worker
    settings = worker.settings
    calls_before = huge.calls
    rid = f"huge-{uuid.uuid4()}"
    value = json.dumps({"request_id": rid, "prompt": "say a lot", "max_tokens": 4096, "providers": ["huge"],
                        "cache_policy": "bypass"}).encode()
    async with RouterClient(settings) as client:
        await client.send_raw(value, priority="normal")
        first = await client.wait_for([rid], timeout_s=60)
        (result,) = first.results[rid]
        assert (result.record["status"], result.record["error_code"]) == ("error", "result_too_large"), \
            result.record
        assert "1000000" in result.record["error_message"] and result.record["provider"] == "huge"
        assert huge.calls == calls_before + 1
        await client.send_raw(value, priority="normal")  # an upstream duplicate: the same request again
        again = await client.wait_for([rid], timeout_s=60, results_each=2)
        good = await client.send({"prompt": "good after the huge answer", "max_tokens": 4})
        after = await client.wait_for([good], timeout_s=60)
    second = again.results[rid][1]
    assert second.record["error_code"] == "result_too_large" and second.replay, second.record
    assert huge.calls == calls_before + 1, "the huge answer was paid for again"
    assert after.results[good][0].record["status"] == "ok"
    assert worker.returncode is None, worker.log_tail(30)
    for topic in (settings.topic("llm.requests.normal"), settings.topic("llm.router.accepted.normal")):
        end = await end_offset(topic)
        committed = await wait_committed(settings.worker.app_id, topic, end)
        assert committed == end, f"the group's commit on {topic} stayed at {committed} of {end}"
