"""`llmrouter dlq list|replay` end to end: the installed command against a real
worker, broker and provider simulator.

The worker's chain is one simulated OpenAI-compatible provider that first
fails every call, so two requests (one JSON, one Avro), each with a deadline a
few seconds ahead, end ``error``/``all_providers_unavailable`` with dead
letters. The listing shows them with the bytes upstream produced; after the
provider is healed, a replay with ``--fresh-deadline`` serves both, while a
replay as they were (past their deadline) times out.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec, encode_json
from llmrouter.wire.contract import PRIORITIES
from llmrouter.core.dlq import REPLAY_HEADER
from llmrouter.config.settings import Settings
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import BOOTSTRAP, SimulatorThread, isolated_settings, read_topic_to_end, sim_provider, start_worker
from tests.e2e.test_cli import run

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
DEADLINE_AHEAD_MS = 5_000


@dataclass
class DeadLettered:
    """The worker, and the two requests that ended on llm.dlq: request_id -> (key, value as produced)."""

    worker: WorkerProcess
    settings_path: Path
    sims: SimulatorThread
    produced: dict[str, tuple[bytes, bytes]]
    deadline_ms: int

    @property
    def settings(self) -> Settings:
        return self.worker.settings

    def dlq(self, *args: str):
        return run("--settings", str(self.settings_path), "dlq", *args)


@pytest.fixture(scope="module")
def dead_lettered(kafka_and_redis, tmp_path_factory) -> Iterator[DeadLettered]:
    directory = tmp_path_factory.mktemp("dlq")
    with SimulatorThread(SimProfile(latency_ms=2, token_delay_ms=0)) as sims:
        sim = sims.sims[0]
        sims.call(sim.update_profile, {"error_rate": 1.0, "fault_weights": {"server_error": 1}})
        settings, path = isolated_settings(directory, directory / "no-model", local_config={"enabled": False},
                                           providers={"sim": sim_provider(sim)}, fallback_chain=["sim"])
        worker = start_worker(path, settings, directory / "worker.log")
        try:
            produced, deadline_ms = asyncio.run(produce_failing_requests(settings))
            yield DeadLettered(worker, path, sims, produced, deadline_ms)
        finally:
            worker.stop()


async def produce_failing_requests(settings: Settings) -> tuple[dict[str, tuple[bytes, bytes]], int]:
    """One JSON and one Avro request with a deadline a few seconds ahead; wait for their error results
    and dead letters."""
    now = int(time.time() * 1000)
    deadline_ms = now + DEADLINE_AHEAD_MS
    fields = {"prompt": "replay me", "max_tokens": 4, "created_at_ms": now, "deadline_ms": deadline_ms}
    json_id, avro_id = f"dlq-json-{uuid.uuid4()}", f"dlq-avro-{uuid.uuid4()}"
    produced = {json_id: (b"key-json", encode_json({"request_id": json_id, **fields})),
                avro_id: (b"key-avro", Codec().encode_avro("LLMRequest", {"request_id": avro_id, **fields}))}
    async with RouterClient(settings) as client:
        for key, value in produced.values():
            await client.send_raw(value, priority="normal", key=key)
        collected = await client.wait_for(list(produced), timeout_s=60, dead_letters=2)
    for rid in produced:
        record = collected.results[rid][0].record
        assert (record["status"], record["error_code"]) == ("error", "all_providers_unavailable"), record
    return produced, deadline_ms


def listed(done) -> dict[str, dict]:
    """`dlq list --json` output by request_id."""
    assert done.returncode == 0, done.stderr
    return {entry["request_id"]: entry for entry in map(json.loads, done.stdout.splitlines())}


def original_bytes(entry: dict) -> bytes:
    value = entry["original_value"]
    return value.encode() if entry["original_value_encoding"] == "text" else base64.b64decode(value)


async def request_topic_ends(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic(f"llm.requests.{p}"), n) for p in PRIORITIES
                      for n in range(settings.kafka.request_partitions)]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


def test_list_shows_each_dead_letter_with_the_bytes_upstream_produced(dead_lettered):
    """`dlq list --json`: both requests with their code, source topic, key and original value byte for
    byte (the JSON one as text, the Avro one as base64); the summary counts them by code; the table
    has one line each."""
    entries = listed(dead_lettered.dlq("list", "--json"))
    assert set(entries) == set(dead_lettered.produced)
    for rid, (key, value) in dead_lettered.produced.items():
        entry = entries[rid]
        assert entry["error_code"] == "all_providers_unavailable" and "every provider" in entry["reason"]
        assert entry["source_topic"] == dead_lettered.settings.topic("llm.requests.normal")
        assert original_bytes(entry) == value and entry["original_key"] == key.decode()
    assert entries[next(r for r in entries if "json" in r)]["original_value_encoding"] == "text"
    assert entries[next(r for r in entries if "avro" in r)]["original_value_encoding"] == "base64"

    table = dead_lettered.dlq("list", "--code", "all_providers_unavailable")
    lines = table.stdout.splitlines()
    assert table.returncode == 0 and lines[0].startswith("ID ") and len(lines) == 4, table.stdout
    assert lines[-1].endswith("dead letters on " + dead_lettered.settings.topic("llm.dlq")
                              + " match: all_providers_unavailable 2")
    assert "none of the 2 dead letters" in dead_lettered.dlq("list", "--code", "undecodable").stdout


def test_a_dry_run_prints_what_it_would_produce_and_produces_nothing(dead_lettered):
    """`dlq replay --all --dry-run --fresh-deadline`: a line per dead letter and not a record more on
    any request topic."""
    before = asyncio.run(request_topic_ends(dead_lettered.settings))
    done = dead_lettered.dlq("replay", "--all", "--dry-run", "--fresh-deadline")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("would replay") == 2 and "fresh deadline" in done.stdout
    assert "nothing was produced" in done.stdout
    assert asyncio.run(request_topic_ends(dead_lettered.settings)) == before


def test_bad_arguments_exit_2_before_anything_is_produced(dead_lettered):
    """--to a topic that does not exist, an id that names no dead letter, a malformed id: exit 2."""
    before = asyncio.run(request_topic_ends(dead_lettered.settings))
    missing_topic = dead_lettered.dlq("replay", "--all", "--to", dead_lettered.settings.topic("llm.requests.nowhere"))
    assert missing_topic.returncode == 2 and "does not exist" in missing_topic.stderr
    assert dead_lettered.dlq("replay", "--id", "0:999999").returncode == 2
    assert dead_lettered.dlq("replay", "--id", "zero").returncode == 2
    assert dead_lettered.dlq("replay").returncode == 2  # nothing selected: argparse says what is required
    assert asyncio.run(request_topic_ends(dead_lettered.settings)) == before


async def replay_and_collect(dead_lettered: DeadLettered, request_ids: list[str], *args: str) -> dict[str, dict]:
    """Run `dlq replay ARGS` while listening, and return the result of each of ``request_ids``."""
    async with RouterClient(dead_lettered.settings) as client:
        done = await asyncio.to_thread(dead_lettered.dlq, "replay", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        collected = await client.wait_for(request_ids, timeout_s=60)
    return {rid: collected.results[rid][0].record for rid in request_ids}


async def test_replay_with_a_fresh_deadline_serves_what_a_plain_replay_cannot(dead_lettered):
    """With the provider healed and the deadlines past: the JSON request replayed as it was gets
    ``timeout``/``deadline_exceeded``; both replayed with --fresh-deadline get ``ok``. The replayed
    messages keep their keys and carry the replay header; the plain one's value is the original."""
    sims = dead_lettered.sims
    sims.call(sims.sims[0].update_profile, {"error_rate": 0.0})
    await asyncio.sleep(max(0.0, (dead_lettered.deadline_ms - time.time() * 1000) / 1000 + 0.5))
    entries = listed(await asyncio.to_thread(dead_lettered.dlq, "list", "--json"))
    json_id = next(rid for rid in dead_lettered.produced if rid.startswith("dlq-json"))

    plain = await replay_and_collect(dead_lettered, [json_id], "--id", entries[json_id]["id"])
    assert (plain[json_id]["status"], plain[json_id]["error_code"]) == ("timeout", "deadline_exceeded")

    fresh = await replay_and_collect(dead_lettered, list(dead_lettered.produced),
                                     "--code", "all_providers_unavailable", "--fresh-deadline")
    assert {rid: r["status"] for rid, r in fresh.items()} == {rid: "ok" for rid in dead_lettered.produced}

    topic = dead_lettered.settings.topic("llm.requests.normal")
    seen = await read_topic_to_end(topic, dead_lettered.settings.kafka.request_partitions,
                                   want={"key-json", "key-avro"})
    replays = {key: [m for m in messages if dict(m.headers).get(REPLAY_HEADER)] for key, messages in seen.items()}
    json_key, json_value = dead_lettered.produced[json_id]
    plain_copy, fresh_copy = replays[json_key.decode()]
    assert plain_copy.value == json_value and dict(plain_copy.headers)[REPLAY_HEADER] == entries[json_id]["id"].encode()
    rewritten = json.loads(fresh_copy.value)
    assert "deadline_ms" not in rewritten and rewritten["created_at_ms"] > dead_lettered.deadline_ms
    assert len(replays["key-avro"]) == 1 and replays["key-avro"][0].value[:2] == b"\xc3\x01"
