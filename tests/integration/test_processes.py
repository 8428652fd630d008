"""``llmrouter worker --processes 2``: two processes share the group's partitions, every request is
answered once, and SIGTERM to the parent stops both."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmrouter.wire.client import RouterClient
from tests.conftest import BOOTSTRAP, isolated_settings

pytestmark = pytest.mark.kafka


def view(port: int, path: str) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return json.load(reply)
    except OSError:
        return {}


async def keys_in(topic: str, wanted: list[str]) -> dict[str, list]:
    """Where (partition, offset) each wanted request_id appears in ``topic``, by key or by value."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: dict[str, list] = {rid: [] for rid in wanted}
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    for rid in wanted:
                        if rid.encode() in (r.key or b"") or rid.encode() in (r.value or b""):
                            found[rid].append((tp.partition, r.offset, r.timestamp))
    finally:
        await consumer.stop()
    return found


def health(port: int) -> dict:
    return view(port, "/health/")


async def test_two_processes_share_the_partitions_and_stop_together(kafka_and_redis, tiny_model_dir, tmp_path):
    settings, path = await asyncio.to_thread(isolated_settings, tmp_path, tiny_model_dir,
                                             kafka={"request_partitions": 4, "partitions": 4})
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTER")}
    log = (tmp_path / "workers.log").open("wb")
    parent = subprocess.Popen([sys.executable, "-m", "llmrouter", "--settings", str(path), "worker", "--processes",
                               "2"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ports = [settings.worker.web_port, settings.worker.web_port + 1]
    try:
        deadline = time.monotonic() + 120
        while not all(health(p).get("ready") and health(p)["kafka"]["assigned_partitions"] for p in ports):
            assert parent.poll() is None, (tmp_path / "workers.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "both processes never held partitions"
            await asyncio.sleep(0.25)
        async with RouterClient(settings) as client:
            ids = [await client.send({"prompt": f"hello {i} {uuid.uuid4()}", "max_tokens": 4}) for i in range(20)]
            try:
                collected = await client.wait_for(ids, timeout_s=90)
            except TimeoutError as exc:
                views = {p: (view(p, "/work/"), view(p, "/health/")) for p in ports}
                missing = [rid for rid in ids if rid not in client.collected.results]
                views["where"] = {t: await keys_in(settings.topic(t), missing)
                                  for t in ("llm.results", "llm.router.accepted.normal", "llm.requests.normal")}
                (tmp_path / "views.json").write_text(json.dumps(views, indent=1))
                raise AssertionError(f"{exc}; the processes' /work/ and /health/ are in {tmp_path}/views.json") from None
            await client.poll(1.0)
        # exactly one result without the replay header each (a redelivered request may add flagged replays)
        firsts = {rid: [r.record["status"] for r in collected.results[rid] if not r.replay] for rid in ids}
        assert {rid: statuses for rid, statuses in firsts.items() if statuses != ["ok"]} == {}
        assert {p: health(p)["kafka"]["assigned_partitions"] > 0 for p in ports} == {p: True for p in ports}
    finally:
        if parent.poll() is None:
            parent.send_signal(signal.SIGTERM)  # the parent forwards it to its children
        try:
            code = parent.wait(timeout=60)
        finally:
            try:
                os.killpg(parent.pid, signal.SIGKILL)  # whatever is left, if the test failed
            except ProcessLookupError:
                pass
            log.close()
    assert code == 0
    assert all(not health(p) for p in ports), "a worker process outlived its parent"
