"""Observability through Kafka, one worker with JSON logs and the console span exporter, the simulator as a
paid provider (issue 10):

* a request sent with a W3C traceparent gets its result (and its stream chunks, and a bad request its dead
  letter) back with a traceparent of the same trace, and the spans the worker exported chain from the result
  back to the producer's span: intake, cache.lookup, answer, dispatch, provider.call;
* every line the worker logged for the request is JSON with its request_id and trace_id, one of them the
  canonical request_answered line;
* the paid calls' bookings on llm.events rebuild the cost ledger exactly (``llmrouter events replay --table
  ledger``), and a spent budget's refusals are one budget_exceeded event per share, not one per request.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from llmrouter.config.settings import Settings
from llmrouter.simulator import SimProfile
from llmrouter.topics import DLQ, EVENTS, RESULTS, STREAM
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import SimulatorThread, isolated_settings, read_topic_to_end, start_worker

pytestmark = pytest.mark.kafka

BUDGET_USD = 0.2  # $0.10 per partition of two
PRICE_PER_1K = 1.0  # a request of ~10 prompt tokens + 16 max_tokens reserves ~$0.026: ~4 per share
PRODUCER_TRACE = "0af7651916cd43dd8448eb211c80319c"
PRODUCER_SPAN = "b7ad6b7169203331"


class Observed:
    def __init__(self, worker: WorkerProcess, settings: Settings, path: Path, env: dict[str, str],
                 sims: SimulatorThread) -> None:
        self.worker, self.settings, self.path, self.env, self.sims = worker, settings, path, env, sims

    def paid_calls(self) -> int:
        """The generation requests the simulated provider itself counted since the worker started."""
        (sim,) = self.sims.sims
        return self.sims.call(sim.stats)["requests"]["openai"]

    def log(self) -> list[dict]:
        """The worker's log, every line parsed as JSON (a line that is not fails the test)."""
        lines = self.worker.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def spans(self, trace_id: str, *names: str, timeout_s: float = 15.0) -> dict[str, dict]:
        """The spans of ``trace_id`` the console exporter wrote (it exports every second), by span id, once
        those named are all there (or the time is up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = {line["context"]["span_id"][2:]: line for line in self.log()
                     if "context" in line and line["context"]["trace_id"][2:] == trace_id}
            if set(names) <= {s["name"] for s in spans.values()} or time.monotonic() > deadline:
                return spans
            time.sleep(0.5)


@pytest.fixture(scope="module")
def observed(kafka_and_redis, tmp_path_factory) -> Iterator[Observed]:
    directory = tmp_path_factory.mktemp("observed")
    with SimulatorThread(SimProfile(latency_ms=20, token_delay_ms=0, reply_words=8)) as sims:
        (sim,) = sims.sims
        settings, path = isolated_settings(
            directory, directory / "no-model", local_config={"enabled": False},
            worker={"log_format": "json", "max_in_flight": 8}, tracing={"exporter": "console"},
            premium_config={"usage_limit": f"${BUDGET_USD}/month", "emergency_only": False,
                            "openai": {"endpoint": sim.base_urls()["openai"], "price_input_per_1k_usd": PRICE_PER_1K,
                                       "price_output_per_1k_usd": PRICE_PER_1K}},
            fallback_chain=["openai"])
        env = {"OPENAI_API_KEY": "sk-sim-observed"}
        worker = start_worker(path, settings, directory / "worker.log", env=env)
        try:
            yield Observed(worker, settings, path, env, sims)
        finally:
            worker.stop()


def _ids(traceparent: bytes) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C traceparent header."""
    _version, trace_id, span_id, _flags = traceparent.decode().split("-")
    return trace_id, span_id


def _header(headers, name: str) -> bytes:
    (value,) = [v for k, v in headers if k == name]
    return value


async def test_a_producers_trace_runs_through_the_router_to_its_result_and_every_log_line_names_it(observed):
    """The result's traceparent is in the producer's trace; following parents from it leads through answer
    and intake to the producer's span, with the dispatch and the provider call under the answer; the
    request's log lines all carry its request_id and the trace id, the canonical line among them."""
    traceparent = [("traceparent", f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01".encode())]
    async with RouterClient(observed.settings) as client:
        rid = await client.send({"prompt": f"trace me {uuid.uuid4()}", "max_tokens": 16}, headers=traceparent)
        streamed = await client.send({"prompt": f"stream me {uuid.uuid4()}", "max_tokens": 16, "stream": True},
                                     headers=traceparent)
        bad = str(uuid.uuid4())
        await client.send_raw(json.dumps({"request_id": bad, "prompt": 42}).encode(), headers=traceparent)
        collected = await client.wait_for([rid, streamed, bad], timeout_s=60)
    (result,) = collected.results[rid]
    assert result.record["status"] == "ok", result.record
    trace_id, result_span = _ids(_header(result.headers, "traceparent"))
    assert trace_id == PRODUCER_TRACE

    spans = observed.spans(PRODUCER_TRACE, "intake", "cache.lookup", "answer", "dispatch", "provider.call")
    chain, span_id = [], result_span
    while span_id in spans:
        chain.append(spans[span_id]["name"])
        span_id = (spans[span_id]["parent_id"] or "0x")[2:]
    assert chain == ["answer", "intake"] and span_id == PRODUCER_SPAN
    answer = spans[result_span]
    (dispatch,) = [s for s in spans.values() if s["name"] == "dispatch" and s["parent_id"] == answer["context"]["span_id"]]
    (call,) = [s for s in spans.values() if s["name"] == "provider.call" and s["parent_id"] == dispatch["context"]["span_id"]]
    assert call["attributes"]["llm.provider"] == "openai" and call["attributes"]["llm.outcome"] == "ok"
    intake = spans[(answer["parent_id"])[2:]]
    assert any(s["name"] == "cache.lookup" and s["parent_id"] == intake["context"]["span_id"] for s in spans.values())
    assert answer["attributes"]["llm.request_id"] == rid and intake["kind"] == "SpanKind.CONSUMER"

    stream = await read_topic_to_end(observed.settings.topic(STREAM), observed.settings.kafka.partitions,
                                     want={streamed}, timeout_s=10)
    dlq = await read_topic_to_end(observed.settings.topic(DLQ), observed.settings.kafka.partitions, want={bad},
                                  timeout_s=10)
    assert stream[streamed] and all(_ids(_header(m.headers, "traceparent"))[0] == PRODUCER_TRACE
                                    for m in stream[streamed])
    (dead,) = dlq[bad]
    assert _ids(_header(dead.headers, "traceparent"))[0] == PRODUCER_TRACE
    assert _ids(_header(collected.results[bad][0].headers, "traceparent"))[0] == PRODUCER_TRACE
    assert Codec().decode("DeadLetter", dead.value)["headers"] == [{"key": "traceparent", "value": traceparent[0][1]}]

    log = observed.log()
    mine = [line for line in log if line.get("request_id") == rid]
    assert mine and all(line["trace_id"] == PRODUCER_TRACE for line in mine)
    assert all(line.get("request_id") in (rid, streamed, bad) for line in log if line.get("trace_id") == PRODUCER_TRACE
               and "event" in line)
    (canonical,) = [line for line in mine if line["event"] == "request_answered"]
    assert canonical["level"] == "info" and canonical["status"] == "ok" and canonical["provider"] == "openai"
    assert canonical["stage"] == "answer" and canonical["cost_usd"] == result.record["cost_usd"]
    assert [line["status"] for line in log if line.get("event") == "request_answered" and line["request_id"] == bad] \
        == ["error"]


async def test_the_bookings_on_llm_events_rebuild_the_live_ledger_exactly_and_a_spent_budget_says_so_once(observed):
    """Paid requests until the budget is spent: `llmrouter events replay --table ledger` finds a booking for
    every paid call and totals equal to the live ledger's to the last bit; both count as many calls as the
    simulated provider itself served, and spent what the tokens it reported for them cost at the configured
    price; the many refusals are one budget_exceeded event per share of the budget; each request has one
    canonical line."""
    settings = observed.settings
    async with RouterClient(settings) as client:
        ids = [await client.send({"prompt": f"pay {i} {uuid.uuid4()}", "max_tokens": 16}) for i in range(24)]
        collected = await client.wait_for(ids, timeout_s=90)
    records = [collected.results[rid][0].record for rid in ids]
    refused = [r for r in records if r["status"] != "ok"]
    assert {(r["status"], r["error_code"]) for r in refused} == {("rejected", "budget_exceeded")}
    assert len(refused) > settings.kafka.partitions, "the budget should refuse more requests than it has shares"

    env = {**os.environ, "LLMROUTER_SETTINGS": str(observed.path)}
    started = time.monotonic()
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "llmrouter", "events", "replay",
                                                    "--table", "ledger", "--json"],
                                   env=env, capture_output=True, text=True, timeout=120)
    print(f"events replay took {time.monotonic() - started:.1f}s")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["match"] and not report["missing"] and not report["differences"]
    assert {n: {"spent_usd": t["spent_usd"], "calls": t["calls"]} for n, t in report["rebuilt"].items()} \
        == report["live"]  # the totals, exactly: no tolerance
    month = next(n for n in report["live"] if n.startswith("provider:openai:"))
    assert report["rebuilt"][month]["spent_usd"] >= sum(r["cost_usd"] for r in records if r["status"] == "ok")
    assert report["bookings"] == report["rebuilt"][month]["calls"]  # every paid call: one booking

    # the provider's side of the books: every call it served since the worker started (this module's other
    # tests' too), and the price of the tokens it said it used, read back from every result on llm.results
    served = observed.paid_calls()
    assert served > 0 and report["live"][month]["calls"] == report["rebuilt"][month]["calls"] == served
    results = await read_topic_to_end(settings.topic(RESULTS), settings.kafka.partitions, want=set(), timeout_s=10)
    paid = [record for messages in results.values() for m in messages
            if (record := Codec().decode("LLMResult", m.value))["status"] == "ok" and record["provider"] == "openai"]
    assert len(paid) == served
    implied_usd = sum(r["prompt_tokens"] + r["completion_tokens"] for r in paid) * PRICE_PER_1K / 1000
    assert implied_usd > 0
    assert report["live"][month]["spent_usd"] == report["rebuilt"][month]["spent_usd"] == pytest.approx(implied_usd)

    events = await read_topic_to_end(settings.topic(EVENTS), settings.kafka.partitions, want=set(), timeout_s=10)
    exceeded = [Codec().decode("Event", m.value) for m in events.get("budget:premium", [])]
    assert len(exceeded) == settings.kafka.partitions  # two shares, each spent once this month
    assert {e["kind"] for e in exceeded} == {"budget_exceeded"}
    assert len({e["data"]["account"] for e in exceeded}) == settings.kafka.partitions

    canonical = [line["request_id"] for line in observed.log() if line.get("event") == "request_answered"]
    assert all(canonical.count(rid) == 1 for rid in ids)

