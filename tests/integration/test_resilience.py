"""The resilience state shared by the workers, through Kafka against the provider simulator.

* Rate limits: two workers of one group against a provider limited to R per
  minute; the simulator, which counts what arrives as a provider's own limiter
  would, never sees more than R per minute (plus one second's burst per worker),
  and every request over it is answered by the next provider.
* Budgets: concurrent requests against a nearly spent budget never overspend it,
  counted at the simulator and in the ledger's changelog; after a SIGKILL a
  fresh worker (empty data dir) restores the ledger from the changelog and
  keeps refusing.
* Breakers: a provider one worker saw fail is closed to every worker: another
  worker's reports open it at the owner, the worker skips it without calling it,
  and a worker started later knows it before its first call.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from llmrouter.wire.client import RouterClient
from llmrouter.core.provider_state import Report
from llmrouter.config.settings import Settings
from llmrouter.simulator import SimProfile
from llmrouter.topics import HEALTH, LEDGER_CHANGELOG
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import (BOOTSTRAP, SimulatorThread, isolated_settings, read_topic_to_end, sibling_settings,
                            sim_provider, start_worker)

pytestmark = pytest.mark.kafka

FAST = SimProfile(latency_ms=5, token_delay_ms=0)


async def _settled(*workers: WorkerProcess, timeout_s: float = 60.0) -> None:
    """Every worker has partitions and no rebalance is under way."""
    deadline = time.monotonic() + timeout_s
    while True:
        health = [w.health()["kafka"] for w in workers]
        if all(h["assigned_partitions"] and not h["rebalancing"] for h in health):
            return
        assert time.monotonic() < deadline, f"the group never settled: {health}"
        await asyncio.sleep(0.2)


def _most_in_any_window(times: list[float], window_s: float) -> int:
    times, most, start = sorted(times), 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


# ---- rate limits ------------------------------------------------------------------------------------------------

LIMIT_PER_MIN = 600  # 10/s: 5/s per worker with one partition of two each, one second's burst (5) each
OFFERED_PER_S = 25
LOAD_S = 16


async def test_two_workers_keep_a_providers_rate_within_its_limit_and_the_rest_goes_on(
        kafka_and_redis, tiny_model_dir, tmp_path):
    with SimulatorThread(FAST, FAST) as sims:
        limited, spare = sims.sims
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
            rate_limits={"enabled": True}, worker={"max_in_flight": 16},
            providers={"limited": sim_provider(limited, max_concurrent=16, rate_limit=f"{LIMIT_PER_MIN}/minute"),
                       "spare": sim_provider(spare, max_concurrent=16)},
            fallback_chain=["limited", "spare"])
        second_settings, second_path = sibling_settings(settings, path, tmp_path / "second")
        first = start_worker(path, settings, tmp_path / "worker-1.log")
        second = start_worker(second_path, second_settings, tmp_path / "worker-2.log")
        try:
            await _settled(first, second)
            shares = [w.get_json("/limits/")[1]["share"] for w in (first, second)]
            assert shares == [0.5, 0.5], shares
            async with RouterClient(settings) as client:
                ids, started = [], time.monotonic()
                for i in range(OFFERED_PER_S * LOAD_S):
                    await asyncio.sleep(max(0.0, started + i / OFFERED_PER_S - time.monotonic()))
                    ids.append(await client.send({"prompt": f"rate {i} {uuid.uuid4()}", "max_tokens": 4}))
                collected = await client.wait_for(ids, timeout_s=120)
            arrivals = sims.call(limited.arrivals)
        finally:
            await asyncio.gather(asyncio.to_thread(first.stop), asyncio.to_thread(second.stop))

    records = [collected.results[rid][0].record for rid in ids]
    assert [r["status"] for r in records].count("ok") == len(ids), "a request failed that 'spare' could serve"
    by_provider = {name: sum(r["provider"] == name for r in records) for name in ("limited", "spare")}
    rate_per_s, bursts = LIMIT_PER_MIN / 60, 2 * 5
    span_s = max(arrivals) - min(arrivals)
    for window_s in (5.0, 10.0, span_s):
        most = _most_in_any_window(arrivals, window_s)
        print(f"\nlimited provider: at most {most} calls in any {window_s:.1f} s (limit {rate_per_s * window_s:.0f} "
              f"+ bursts {bursts}); {by_provider} of {len(ids)} requests")
        assert most <= rate_per_s * window_s + bursts + 1, (window_s, most)
    # per minute: at most the limit plus the two bursts (10 of 600: 1.7 %), within the 5 % the issue allows
    assert (rate_per_s * 60 + bursts) / LIMIT_PER_MIN <= 1.05
    assert by_provider["limited"] == len(arrivals)
    assert len(arrivals) >= 0.8 * rate_per_s * LOAD_S, f"the limit was not used: {len(arrivals)} calls in {LOAD_S} s"
    assert by_provider["spare"] >= len(ids) - rate_per_s * LOAD_S - bursts - 1
    skipped = [a for r in records for a in r["attempts"] if a["outcome"] == "skipped"]
    assert skipped and {a["error_code"] for a in skipped} == {"rate_limited"}


# ---- budgets ----------------------------------------------------------------------------------------------------

BUDGET_USD = 0.2  # $0.10 per partition of two
PRICE_PER_1K = 1.0  # USD per 1,000 tokens in and out: a request of ~10 prompt + 16 max_tokens reserves ~$0.026


def _budget_settings(tmp_path: Path, tiny_model_dir: Path, sim_url: str) -> tuple[Settings, Path]:
    return isolated_settings(
        tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
        worker={"max_in_flight": 16},
        premium_config={"usage_limit": f"${BUDGET_USD}/month", "emergency_only": False,
                        "openai": {"endpoint": sim_url, "price_input_per_1k_usd": PRICE_PER_1K,
                                   "price_output_per_1k_usd": PRICE_PER_1K}},
        fallback_chain=["openai"])


async def _ledger(settings: Settings) -> dict[str, dict]:
    """Every account in the ledger's changelog (the last record of each key), read whole."""
    topic = LEDGER_CHANGELOG.format(app_id=settings.worker.app_id)
    seen = await read_topic_to_end(topic, settings.kafka.partitions, want=set(), timeout_s=10)
    return {key: json.loads(messages[-1].value) for key, messages in seen.items()}


async def test_concurrent_requests_never_overspend_a_budget_and_a_fresh_worker_restores_it(
        kafka_and_redis, tiny_model_dir, tmp_path):
    with SimulatorThread(SimProfile(latency_ms=50, token_delay_ms=0, reply_words=8)) as sims:
        (sim,) = sims.sims
        settings, path = await asyncio.to_thread(_budget_settings, tmp_path, tiny_model_dir, sim.base_urls()["openai"])
        env = {"OPENAI_API_KEY": "sk-sim-budget"}
        worker = start_worker(path, settings, tmp_path / "worker-1.log", env=env)
        try:
            await _settled(worker)
            async with RouterClient(settings) as client:
                ids = [await client.send({"prompt": f"budget {i} {uuid.uuid4()}", "max_tokens": 16},
                                         priority=("critical", "high", "normal", "low")[i % 4]) for i in range(40)]
                collected = await client.wait_for(ids, timeout_s=120)
            paid_calls = sims.call(sim.stats)["requests"]["openai"]
            worker.kill()  # SIGKILL: nothing flushed, nothing handed over

            records = [collected.results[rid][0].record for rid in ids]
            ok = [r for r in records if r["status"] == "ok"]
            refused = [r for r in records if r["status"] != "ok"]
            assert ok and refused, "the budget should serve some of the 40 and refuse the rest"
            assert {(r["status"], r["error_code"]) for r in refused} == {("rejected", "budget_exceeded")}
            assert paid_calls == len(ok)  # a refused request never reached the provider
            spent = sum(r["cost_usd"] for r in ok)
            assert spent <= BUDGET_USD
            ledger = await _ledger(settings)
            budget = {k: v for k, v in ledger.items() if k.startswith("budget:premium:")}
            assert len(budget) == settings.kafka.partitions
            assert sum(a["spent_usd"] for a in budget.values()) == pytest.approx(spent)
            assert all(a["spent_usd"] <= BUDGET_USD / 2 + 1e-9 and not a["reserved"] for a in budget.values())
            assert sum(a["calls"] for k, a in ledger.items() if k.startswith("provider:openai:")) == len(ok)

            fresh_settings, fresh_path = sibling_settings(settings, path, tmp_path / "fresh")  # empty data dir
            fresh = start_worker(fresh_path, fresh_settings, tmp_path / "worker-2.log", env=env)
            try:
                await _settled(fresh)
                status, view = fresh.get_json("/ledger/?all=1")  # any worker answers for every partition
                month = next(k for k in view["totals"] if k.startswith("budget:premium:"))
                assert status == 200 and view["totals"][month]["spent_usd"] == pytest.approx(spent)
                assert view["every_partition"] and view["totals"][month]["budget_usd"] == pytest.approx(BUDGET_USD)
                async with RouterClient(settings) as client:
                    more = [await client.send({"prompt": f"after {i} {uuid.uuid4()}", "max_tokens": 16})
                            for i in range(8)]
                    after = await client.wait_for(more, timeout_s=60)
            finally:
                fresh.stop()
            # A partition whose calls cost less than reserved may have room for one more; without the ledger
            # restored, the fresh worker would have had the whole budget again and spent past it.
            records_after = [after.results[rid][0].record for rid in more]
            ok_after = [r for r in records_after if r["status"] == "ok"]
            assert {r["error_code"] for r in records_after if r["status"] != "ok"} == {"budget_exceeded"}
            assert len(ok_after) < len(more) / 2
            assert spent + sum(r["cost_usd"] for r in ok_after) <= BUDGET_USD
            assert sims.call(sim.stats)["requests"]["openai"] == paid_calls + len(ok_after)
        finally:
            worker.stop()


# ---- breakers ---------------------------------------------------------------------------------------------------


async def test_a_provider_another_worker_saw_failing_is_closed_to_every_worker(kafka_and_redis, tiny_model_dir,
                                                                                tmp_path):
    with SimulatorThread(FAST, FAST) as sims:
        flaky, spare = sims.sims
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
            breaker={"consecutive_failures": 5, "cooldown_s": 60, "max_cooldown_s": 60},
            providers={"flaky": sim_provider(flaky), "spare": sim_provider(spare)},
            fallback_chain=["flaky", "spare"])
        worker = start_worker(path, settings, tmp_path / "worker-1.log")
        try:
            await _settled(worker)
            producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
            await producer.start()
            try:  # what another worker's five failed calls report
                await producer.send_and_wait(settings.topic(HEALTH), Report("peer:1", "00000").to_bytes(),
                                             key=b"flaky")
            finally:
                await producer.stop()
            reported = time.monotonic()
            while worker.get_json("/breakers/")[1]["here"].get("flaky") != "open":
                assert time.monotonic() - reported < 5, worker.get_json("/breakers/")[1]
                await asyncio.sleep(0.02)
            opened_in_s = time.monotonic() - reported
            group = worker.get_json("/breakers/")[1]["group"]["flaky"]
            assert group["state"] == "open" and "5 failures in a row" in group["reason"]

            async with RouterClient(settings) as client:
                ids = [await client.send({"prompt": f"skip {i}", "max_tokens": 4}) for i in range(5)]
                collected = await client.wait_for(ids, timeout_s=60)
            for rid in ids:
                record = collected.results[rid][0].record
                assert record["provider"] == "spare"
                assert (record["attempts"][0]["provider"], record["attempts"][0]["error_code"]) == (
                    "flaky", "circuit_open")
            assert sims.call(flaky.stats)["requests"]["openai"] == 0

            events = await read_topic_to_end(settings.topic("llm.events"), settings.kafka.partitions,
                                             want={"provider:flaky"}, timeout_s=10)
            assert b"breaker_open" in b"".join(m.value for m in events["provider:flaky"])

            later_settings, later_path = sibling_settings(settings, path, tmp_path / "later")
            later = start_worker(later_path, later_settings, tmp_path / "worker-2.log")
            try:  # it read the state before it served: open from the start, no call of its own needed
                assert later.get_json("/breakers/")[1]["here"].get("flaky") == "open"
            finally:
                later.stop()
        finally:
            worker.stop()
    print(f"\nopen at the worker {opened_in_s * 1000:.0f} ms after the peer's report was written")


# ---- routing among equivalent providers, hedging ------------------------------------------------------------------


async def test_equivalent_providers_go_fastest_first_and_a_slow_critical_call_is_hedged(kafka_and_redis,
                                                                                        tiny_model_dir, tmp_path):
    """'slow' (300 ms) and 'fast' (10 ms) are equivalent, chosen by latency, and critical requests are hedged
    after 100 ms: the first critical request asks slow, then fast too, and fast's answer wins (slow's call
    cancelled); once both have figures, normal requests go to fast first."""
    with SimulatorThread(SimProfile(latency_ms=300, token_delay_ms=0), SimProfile(latency_ms=10, token_delay_ms=0)) \
            as sims:
        slow, fast = sims.sims
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
            providers={"slow": sim_provider(slow), "fast": sim_provider(fast)}, fallback_chain=["slow", "fast"],
            routing={"equivalent": [["slow", "fast"]], "strategy": "latency", "hedge_after_ms": 100})
        worker = start_worker(path, settings, tmp_path / "worker.log")
        try:
            await _settled(worker)
            async with RouterClient(settings) as client:
                critical = await client.send({"prompt": "hedge me", "max_tokens": 4}, priority="critical")
                hedged = (await client.wait_for([critical], timeout_s=30)).results[critical][0].record
                normal = []
                for i in range(10):
                    rid = await client.send({"prompt": f"route {i}", "max_tokens": 4})
                    normal.append((await client.wait_for([rid], timeout_s=30)).results[rid][0].record)
        finally:
            worker.stop()
    assert hedged["provider"] == "fast" and hedged["total_latency_ms"] < 300
    assert [(a["provider"], a["outcome"], a["error_code"]) for a in hedged["attempts"]] == [
        ("slow", "cancelled", "hedge_lost"), ("fast", "ok", None)]
    by_fast = [r for r in normal if r["provider"] == "fast"]
    assert len(by_fast) >= 8, [r["provider"] for r in normal]
    assert any("fast/slow by latency" in r["route_reason"] for r in by_fast)


# ---- a worker killed mid-load --------------------------------------------------------------------------------------


async def test_a_worker_killed_mid_load_leaves_the_breakers_and_the_ledger_to_the_survivor(kafka_and_redis,
                                                                                            tiny_model_dir, tmp_path):
    """Two workers serve paid requests ('down' open for the group, 'openai' answering); one is SIGKILLed
    mid-load. The survivor takes its partitions and their ledger from the changelog: every request is
    answered, 'down' is never called, a paid call is repeated only for a request the dead worker was calling
    (its reservation, restored, is settled by the survivor under the same id), and the ledger's calls and
    spend agree with the simulator's count."""
    with SimulatorThread(SimProfile(latency_ms=150, token_delay_ms=0, reply_words=4), FAST) as sims:
        paid, down = sims.sims
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
            worker={"max_in_flight": 4}, limits={"default_timeout_s": 120},
            breaker={"consecutive_failures": 5, "cooldown_s": 120, "max_cooldown_s": 120},
            providers={"down": sim_provider(down)}, fallback_chain=["down", "openai"],
            premium_config={"usage_limit": "$100/month", "emergency_only": False,
                            "openai": {"endpoint": paid.base_urls()["openai"], "price_input_per_1k_usd": PRICE_PER_1K,
                                       "price_output_per_1k_usd": PRICE_PER_1K}})
        env = {"OPENAI_API_KEY": "sk-sim-kill"}
        second_settings, second_path = sibling_settings(settings, path, tmp_path / "second")
        first = start_worker(path, settings, tmp_path / "worker-1.log", env=env)
        second = start_worker(second_path, second_settings, tmp_path / "worker-2.log", env=env)
        try:
            await _settled(first, second)
            producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
            await producer.start()
            try:
                await producer.send_and_wait(settings.topic(HEALTH), Report("peer:1", "00000").to_bytes(), key=b"down")
            finally:
                await producer.stop()
            deadline = time.monotonic() + 10
            while not all(w.get_json("/breakers/")[1]["here"].get("down") == "open" for w in (first, second)):
                assert time.monotonic() < deadline, "the group's breaker never reached both workers"
                await asyncio.sleep(0.05)
            async with RouterClient(settings) as client:
                ids = []
                for i in range(60):
                    ids.append(await client.send({"prompt": f"kill {i} {uuid.uuid4()}", "max_tokens": 8},
                                                 priority=("high", "normal")[i % 2]))
                    await asyncio.sleep(0.03)
                    if i == 30:
                        second.kill()
                try:
                    collected = await client.wait_for(ids, timeout_s=120)
                except TimeoutError as exc:  # what the survivor was doing, to say why
                    views = {path: first.get_json(path)[1] for path in ("/work/", "/backpressure/", "/breakers/")}
                    raise AssertionError(f"{exc}; the survivor: {json.dumps(views)[:4000]}") from exc
            calls = sims.call(paid.stats)["requests"]["openai"]
            assert sims.call(down.stats)["requests"]["openai"] == 0
        finally:
            first.stop()
            second.stop()

    firsts = {rid: [r.record for r in collected.results[rid] if not r.replay] for rid in ids}
    assert all(records and records[0]["status"] == "ok" for records in firsts.values())
    assert len(ids) <= calls <= len(ids) + 2 * 4  # repeated only what the dead worker was calling (2 lanes x 4)
    ledger = await _ledger(settings)
    budget = [a for k, a in ledger.items() if k.startswith("budget:premium:")]
    provider = [a for k, a in ledger.items() if k.startswith("provider:openai:")]
    assert all(not a["reserved"] for a in budget), "a reservation of the dead worker was never settled"
    # a call cut off by the kill is booked at its estimate when its request comes back (issue 19, item 6),
    # whether or not it had reached the provider: the ledger may count up to the calls in flight more
    assert calls - 2 * 4 <= sum(a["calls"] for a in provider) <= calls + 2 * 4
    assert sum(a["spent_usd"] for a in budget) == pytest.approx(sum(a["spent_usd"] for a in provider))
