"""Poison requests mixed into a stream: each ends in its dead letter and/or its
``error``/``rejected`` result, and every other request is still answered
within normal latency (nothing holds a slot, nothing stalls a lane).

Among them, eight requests whose ``reply_to`` names a topic that does not
exist: unchecked, each would hold an answer slot while the producer waits for
the topic's metadata (faust's default: 20 minutes), and eight of them froze
the lane.
"""

from __future__ import annotations

import json
import uuid

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.simulator import SimProfile
from tests.conftest import SimulatorThread, isolated_settings, sim_provider, start_worker

pytestmark = pytest.mark.kafka
GOOD = 24
NORMAL_LATENCY_MS = 5_000  # the simulated provider answers in 5 ms; anything near this is a stall


@pytest.fixture(scope="module")
def poison_worker(kafka_and_redis, tiny_model_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("poison")
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0)) as sims:
        settings, path = isolated_settings(
            directory, tiny_model_dir, worker={"max_in_flight": 4}, local_config={"enabled": False},
            providers={"fast": sim_provider(sims.sims[0])}, fallback_chain=["fast"])
        worker = start_worker(path, settings, directory / "worker.log")
        yield worker
        worker.stop()


def poisons(settings) -> list[tuple[str, bytes, str | None, str, str | None]]:
    """(kind, value, request_id or None, what it must get, its code) for each poison."""
    def request(**fields) -> tuple[str, bytes]:
        rid = fields.pop("request_id", f"poison-{uuid.uuid4()}")
        return rid, json.dumps({"request_id": rid, "prompt": "p", **fields}, ensure_ascii=False).encode()

    out = []
    for _ in range(8):
        rid, value = request(reply_to=settings.topic("llm.replies.nowhere"))
        out.append(("reply_to unknown", value, rid, "rejected", "reply_to_unknown"))
    rid, value = request(reply_to=settings.topic("llm.router.accepted.normal"))
    out.append(("reply_to not allowed", value, rid, "rejected", "reply_to_not_allowed"))
    rid, value = request(prompt="漢" * 300_000)  # 900 kB of UTF-8; 1.8 MB once re-encoded as ASCII JSON
    out.append(("huge prompt", value, rid, "rejected", "prompt_too_long"))
    rid, value = request(max_tokens=10**9)
    out.append(("max_tokens", value, rid, "rejected", "max_tokens_too_large"))
    rid, value = request(seed=-1)  # crashed the local model's sampler before it was validated
    out.append(("negative seed", value, rid, "dead letter + error", "invalid_request"))
    rid, value = request(prompt=None)
    out.append(("no prompt", value, rid, "dead letter + error", "invalid_request"))
    value = json.dumps({"request_id": "\ud800", "prompt": "p"}).encode()  # a lone surrogate: cannot key a result
    out.append(("unencodable request_id", value, None, "dead letter", "invalid_request"))
    out.append(("garbage", b"\x00\x01 not a request", None, "dead letter", "undecodable"))
    return out


async def test_poison_requests_end_in_their_outcome_and_the_rest_flow_on(poison_worker):
    """Good requests interleaved with every kind of poison: all good ones ok within normal
    latency; each poison has exactly its dead letter and/or its result with its code."""
    settings = poison_worker.settings
    bad = poisons(settings)
    async with RouterClient(settings) as client:
        good = []
        for i in range(GOOD):
            good.append(await client.send({"prompt": f"good {i}", "max_tokens": 4}))
            if i < len(bad):
                await client.send_raw(bad[i][1], priority="normal", key=f"k{i}".encode())
        dead_lettered = sum(1 for kind in bad if "dead letter" in kind[3])
        with_result = [p[2] for p in bad if p[2] is not None]
        collected = await client.wait_for(good + with_result, timeout_s=60, dead_letters=dead_lettered)

    for rid in good:
        (result,) = collected.results[rid]
        assert result.record["status"] == "ok", result.record
        assert result.record["total_latency_ms"] < NORMAL_LATENCY_MS, result.record
    letters = {letter["original_value"]: letter for letter in collected.dead_letters}
    for kind, value, rid, outcome, code in bad:
        if "dead letter" in outcome:
            assert letters[value]["error_code"] == code, kind
            assert letters[value]["source_topic"] == settings.topic("llm.requests.normal"), kind
        else:
            assert value not in letters, kind
        if rid is not None:
            (result,) = collected.results[rid]
            want = "error" if "error" in outcome else "rejected"
            assert (result.record["status"], result.record["error_code"]) == (want, code), kind
