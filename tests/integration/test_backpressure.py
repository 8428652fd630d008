"""Priorities under overload, and per-user quotas, through a real worker and Kafka against the provider simulator.

One slow provider with two slots. A flood of low and normal requests, and a
trickle of critical ones sent during it:

* critical stays flat: its p95 stays within one provider call of its p95 with
  the provider idle, while the flood's backlog is seconds long;
* low waits: the worker pauses low while normal requests wait for a slot (the
  /backpressure/ view, the gauge and llm.events say so), and resumes it when
  the normal backlog is gone;
* nothing is dropped: every request gets exactly one result, ok, and the
  provider is called once per request.

Quotas: a user over its quota is rejected with quota_exceeded and the provider
is not called; its critical requests go through; overrides hold.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import SimulatorThread, isolated_settings, read_topic_to_end, sim_provider, start_worker

pytestmark = pytest.mark.kafka

CALL_MS = 100  # each call at the simulator
SLOTS = 2  # the provider's max_concurrent: 20 calls a second at most
FLOOD_EACH = 100  # low and normal requests each: 10 s of the provider's whole capacity
CRITICAL = 20
CRITICAL_GAP_S = 0.15
QUOTA = 4  # requests per hour per user, for the quota test


@pytest.fixture(scope="module")
def slow_provider_worker(kafka_and_redis: None, tiny_model_dir: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, SimulatorThread]]:
    """A worker whose only provider is a simulator taking CALL_MS per call, SLOTS at a time."""
    tmp_path = tmp_path_factory.mktemp("backpressure")
    with SimulatorThread(SimProfile(latency_ms=CALL_MS, token_delay_ms=0, reply_words=3)) as sims:
        settings, path = isolated_settings(
            tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
            providers={"slow": sim_provider(sims.sims[0], max_concurrent=SLOTS, timeout_s=30)},
            fallback_chain=["slow"], limits={"default_timeout_s": 120},
            backpressure={"pause_after_s": 0.5, "resume_after_s": 1.0, "max_resume_after_s": 4,
                          "sample_interval_s": 0.05},
            quotas={"per_user": f"{QUOTA}/hour", "overrides": {"vip": None, "batch": "1/hour"}})
        worker = start_worker(path, settings, tmp_path / "worker.log")
        try:
            yield worker, sims
        finally:
            worker.stop()
            print(worker.log_tail(15))


def _calls(sims: SimulatorThread) -> int:
    return len(sims.call(sims.sims[0].arrivals))


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def _trickle(client: RouterClient, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        ids.append(await client.send({"prompt": f"{tag} {i} {uuid.uuid4()}", "max_tokens": 4}, priority="critical"))
        await asyncio.sleep(CRITICAL_GAP_S)
    return ids


async def _watch_paused(worker: WorkerProcess, seen: list[tuple[float, list[str]]], stop: asyncio.Event) -> None:
    """Poll /backpressure/ every 50 ms: (time, priorities paused), until ``stop``."""
    while not stop.is_set():
        _, state = await asyncio.to_thread(worker.get_json, "/backpressure/")
        seen.append((time.monotonic(), [p["priority"] for p in state["paused"]]))
        await asyncio.sleep(0.05)


async def test_under_a_flood_critical_stays_flat_low_waits_and_resumes_and_nothing_is_dropped(slow_provider_worker):
    """Baseline: 20 critical requests with the provider idle. Then 100 low + 100 normal at once and 20
    critical during them: critical p95 within one call of the baseline's, low paused then resumed,
    normal never paused, every request answered once (ok) and the provider called once per request."""
    worker, sims = slow_provider_worker
    calls_before = _calls(sims)
    seen: list[tuple[float, list[str]]] = []
    async with RouterClient(worker.settings) as client:
        baseline_ids = await _trickle(client, CRITICAL, "baseline")
        await client.wait_for(baseline_ids, timeout_s=30)

        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_paused(worker, seen, stop))
        flood_started = time.monotonic()
        flood = {"low": [], "normal": []}
        for i in range(FLOOD_EACH):
            for priority in ("low", "normal"):
                flood[priority].append(await client.send(
                    {"prompt": f"flood {priority} {i} {uuid.uuid4()}", "max_tokens": 4}, priority=priority))
        critical_ids = await _trickle(client, CRITICAL, "urgent")
        everything = baseline_ids + critical_ids + flood["low"] + flood["normal"]
        await client.wait_for(everything, timeout_s=60)
        flood_done = time.monotonic()
        deadline = flood_done + 15  # resumed once the backlog is gone (resume_after_s, doubled at most twice)
        while not seen or seen[-1][1]:
            assert time.monotonic() < deadline, f"still paused: {seen[-1]}"
            await asyncio.sleep(0.05)
        stop.set()
        await watcher
        collected = await client.read_to_end()
    resumed_gauge = worker.metric("llmrouter_backpressure_paused", priority="low")

    latency = {rid: collected.results[rid][0].record["total_latency_ms"] for rid in everything}
    base = [latency[rid] for rid in baseline_ids]
    urgent = [latency[rid] for rid in critical_ids]
    low, normal = [latency[rid] for rid in flood["low"]], [latency[rid] for rid in flood["normal"]]
    paused_low = [t - flood_started for t, paused in seen if "low" in paused]
    window = f"from {paused_low[0]:.1f} s to {paused_low[-1]:.1f} s" if paused_low else "never"
    print(f"\ncritical p50/p95 idle {_p(base, 50):.0f}/{_p(base, 95):.0f} ms, during the flood "
          f"{_p(urgent, 50):.0f}/{_p(urgent, 95):.0f} ms; normal p50 {_p(normal, 50):.0f} ms, low p50 "
          f"{_p(low, 50):.0f} ms; low seen paused {window} after the flood began (all answered at "
          f"{flood_done - flood_started:.1f} s)")

    for rid in everything:  # exactly one result each, none a replay, all served
        assert [(r.record["status"], r.replay) for r in collected.results[rid]] == [("ok", False)], rid
    assert _calls(sims) - calls_before == len(everything)  # one call per request: nothing lost, nothing twice

    assert paused_low, "low was never seen paused"
    assert not any("critical" in paused for _, paused in seen)
    assert not any("normal" in paused for _, paused in seen), "normal's own backlog must not pause normal"
    assert seen[-1][1] == [] and resumed_gauge == 0.0

    assert _p(urgent, 95) <= _p(base, 95) + CALL_MS + 150, (base, urgent)
    assert _p(low, 50) > _p(normal, 50) > 4 * _p(urgent, 95)  # the backlog is seconds; critical went past it

    events = await read_topic_to_end(worker.settings.topic("llm.events"), worker.settings.kafka.partitions,
                                     want={"backpressure:low"}, timeout_s=10)
    kinds = [Codec().decode("Event", m.value) for m in events["backpressure:low"]]
    assert [e["kind"] for e in kinds][:2] == ["paused", "resumed"] and kinds[0]["data"]["priority"] == "low"
    paused_for_s = (kinds[1]["at_ms"] - kinds[0]["at_ms"]) / 1000
    print(f"low paused for {paused_for_s:.1f} s ({len(kinds)} events on llm.events: "
          f"{', '.join(e['kind'] for e in kinds)})")


async def test_a_user_over_its_quota_is_rejected_without_a_call_and_critical_bypasses_it(slow_provider_worker):
    """Quota 4/hour: alice's 7 normal requests give 4 ok and 3 rejected quota_exceeded, with 4 calls; her 3
    critical ones all pass (emergency bypass). Overrides: vip is unlimited, batch has 1/hour; a request with
    no user_id is not limited."""
    worker, sims = slow_provider_worker
    calls_before = _calls(sims)
    sent: dict[str, list[str]] = {"alice": [], "alice-critical": [], "vip": [], "batch": [], "anonymous": []}
    async with RouterClient(worker.settings) as client:
        for user, n, priority in (("alice", 7, "normal"), ("vip", 8, "normal"), ("batch", 3, "low"),
                                  ("anonymous", 6, "normal")):
            for i in range(n):
                body = {"prompt": f"quota {user} {i} {uuid.uuid4()}", "max_tokens": 4}
                if user != "anonymous":
                    body["user_id"] = user
                sent[user].append(await client.send(body, priority=priority))
        for i in range(3):
            sent["alice-critical"].append(await client.send(
                {"prompt": f"quota alice urgent {i} {uuid.uuid4()}", "max_tokens": 4, "user_id": "alice"},
                priority="critical"))
        collected = await client.wait_for([rid for ids in sent.values() for rid in ids], timeout_s=60)

    def outcomes(user: str) -> list[tuple[str, str | None]]:
        return sorted((collected.results[rid][0].record["status"], collected.results[rid][0].record["error_code"])
                      for rid in sent[user])

    assert outcomes("alice") == [("ok", None)] * QUOTA + [("rejected", "quota_exceeded")] * 3
    assert outcomes("alice-critical") == [("ok", None)] * 3
    assert outcomes("vip") == [("ok", None)] * 8
    assert outcomes("batch") == [("ok", None)] + [("rejected", "quota_exceeded")] * 2
    assert outcomes("anonymous") == [("ok", None)] * 6
    rejected = [collected.results[rid][0].record for rid in sent["alice"]
                if collected.results[rid][0].record["status"] == "rejected"]
    assert "over its quota of 4/hour" in rejected[0]["error_message"] and not rejected[0]["attempts"]
    assert _calls(sims) - calls_before == QUOTA + 3 + 8 + 1 + 6  # a rejected request never reached the provider
    assert worker.metric("llmrouter_quota_exceeded_total", priority="normal") == 3
