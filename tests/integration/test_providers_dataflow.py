"""Every cloud provider through the real dataflow: requests into Kafka, a worker
calling the provider simulator in each vendor's wire format, results out of
Kafka.

One simulator per provider (so each one's script is its own), served from a
thread; the worker is a child process with API keys in its environment only.
For every provider: a success, a streamed success, each retriable error class
(retried on the same provider, then answered) and each one that is not
retried. Then connection reuse counted on the simulator's side, and that the
key appears nowhere the router writes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrouter.wire.client import RouterClient
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import SimulatorThread, isolated_settings, read_topic_to_end, start_worker

pytestmark = pytest.mark.kafka

API_KEY = f"sk-sim-{uuid.uuid4().hex}"
PROVIDERS = ("huggingface", "together", "openai", "anthropic", "compat")
FLAVOR = {"huggingface": "huggingface", "together": "openai", "openai": "openai", "anthropic": "anthropic",
          "compat": "openai"}
MODEL = {"huggingface": "google/flan-t5-large", "together": "meta-llama/Llama-3-8b-chat-hf",
         "openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest", "compat": "my-llama"}
TIMEOUT_S = 1.5
POOL_SIZE = 2
# outcome forced on the first call -> (attempt outcome, error code, streamed?)
RETRIED = {
    "server_error": ("error", "provider_unavailable", False),
    "overloaded": ("error", "provider_unavailable", False),
    "rate_limited": ("error", "rate_limited", False),
    "timeout": ("timeout", "provider_timeout", False),
    "malformed": ("error", "malformed_reply", False),
    "truncated": ("error", "malformed_reply", False),
    "malformed ": ("error", "malformed_reply", True),  # the same faults in a stream
    "truncated ": ("error", "malformed_reply", True),
    "stream_error": ("error", "provider_unavailable", True),
}
# outcome -> (result error code, attempt error code): not retried on the same provider
NOT_RETRIED = {
    "auth_error": ("all_providers_unavailable", "auth_error"),
    "context_too_long": ("all_providers_unavailable", "context_too_long"),
    "bad_request": ("bad_request", "bad_request"),
}


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, SimulatorThread]]:
    profile = SimProfile(latency_ms=2, token_delay_ms=0, api_key=API_KEY, retry_after_s=1, hang_s=20)
    compat = SimProfile(latency_ms=2, token_delay_ms=0, retry_after_s=1, hang_s=20)  # a server of your own: no key
    with SimulatorThread(*(compat if name == "compat" else profile for name in PROVIDERS)) as thread:
        yield thread


@pytest.fixture(scope="module")
def cloud_worker(sims: SimulatorThread, kafka_and_redis: None, tiny_model_dir: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker whose only providers are the five cloud ones, each pointed at its simulator."""
    urls = {name: sim.base_urls()[FLAVOR[name]] for name, sim in zip(PROVIDERS, sims.sims)}
    directory = tmp_path_factory.mktemp("cloud-worker")
    limits = {"max_concurrent": POOL_SIZE, "timeout": TIMEOUT_S}
    settings, path = isolated_settings(
        directory, tiny_model_dir,
        local_config={"enabled": False},
        cache={"enabled": False},  # every fault is asked with the same prompt: each must reach its provider
        huggingface_config={"endpoint": urls["huggingface"]},
        together_config={"endpoint": urls["together"]},
        premium_config={"openai": {"endpoint": urls["openai"]}, "anthropic": {"endpoint": urls["anthropic"]}},
        providers={"compat": {"kind": "openai_compatible", "endpoint": urls["compat"], "api_key_env": "",
                              "models": [MODEL["compat"]], "timeout_s": TIMEOUT_S, "max_concurrent": POOL_SIZE}},
        llm_config={"huggingface": limits, "together": limits, "premium": limits},
        registry={"health_check_interval_s": 1},
    )
    keys = {"HF_TOKEN": API_KEY, "TOGETHER_API_KEY": API_KEY, "OPENAI_API_KEY": API_KEY,
            "ANTHROPIC_API_KEY": API_KEY}
    proc = start_worker(path, settings, directory / "worker.log", env=keys)
    yield proc
    proc.stop()


def sim_of(sims: SimulatorThread, provider: str):
    return sims.sims[PROVIDERS.index(provider)]


async def ask(client: RouterClient, provider: str, *, stream: bool = False, max_tokens: int = 6) -> tuple[dict, list]:
    """One request allowed only ``provider``; its result and stream chunks."""
    rid = await client.send({"prompt": f"tell me about {provider}", "max_tokens": max_tokens, "stream": stream,
                             "providers": [provider]})
    collected = await client.wait_for([rid], timeout_s=60)
    return collected.results[rid][0].record, collected.chunks.get(rid, [])


def attempts(record: dict) -> list[tuple[str, str, str | None]]:
    return [(a["provider"], a["outcome"], a["error_code"]) for a in record["attempts"]]


async def serve_every_case(client: RouterClient, sims: SimulatorThread, provider: str) -> list[str]:
    """Run every case for one provider in turn; return what went wrong (empty = all good)."""
    wrong: list[str] = []
    sim = sim_of(sims, provider)

    def check(case: str, ok: bool, record: dict) -> None:
        if not ok:
            wrong.append(f"{provider}/{case}: {record['status']} {record.get('error_code')} {attempts(record)}")

    record, _ = await ask(client, provider)
    check("success", record["status"] == "ok" and record["provider"] == provider and record["model"] == MODEL[provider]
          and record["completion_tokens"] == 6 and record["text"].count(" ") == 5, record)

    record, chunks = await ask(client, provider, stream=True)
    check("stream", record["status"] == "ok" and "".join(c["delta"] for c in chunks) == record["text"]
          and [c["seq"] for c in chunks] == list(range(len(chunks))) and chunks[-1]["final"]
          and len(chunks) >= 6, record)

    for case, (outcome, code, stream) in RETRIED.items():
        sims.call(sim.script, [case.strip()])
        record, chunks = await ask(client, provider, stream=stream)
        check(case, record["status"] == "ok"
              and attempts(record) == [(provider, outcome, code), (provider, "ok", None)], record)
        if stream and case.strip() != "malformed":  # the broken attempt sent text: the retry says restart
            check(case + " restart", any(c["restart"] for c in chunks), record)

    for case, (result_code, attempt_code) in NOT_RETRIED.items():
        sims.call(sim.script, [case])
        record, _ = await ask(client, provider)
        check(case, record["status"] == "error" and record["error_code"] == result_code
              and attempts(record) == [(provider, "error", attempt_code)], record)
    return wrong


async def test_every_provider_answers_streams_and_maps_each_error_class(cloud_worker: WorkerProcess,
                                                                         sims: SimulatorThread):
    """For each of the five cloud providers, through Kafka: a success with usage and cost, a streamed
    success whose chunks add up to the text, each retriable error retried on the same provider (Retry-After
    honoured, timeouts cut at the provider timeout), and auth / context-too-long / bad-request not retried."""
    async with RouterClient(cloud_worker.settings) as client:
        wrong = await asyncio.gather(*(serve_every_case(client, sims, name) for name in PROVIDERS))
    assert [problem for problems in wrong for problem in problems] == []
    cost = cloud_worker.metric("llmrouter_provider_cost_usd_total", provider="together")
    assert cost > 0  # F013's price per token, charged from the reported usage
    for name in PROVIDERS:  # every attempt is timed: 2 per retried case, 1 per other case
        calls = cloud_worker.metric("llmrouter_provider_call_duration_seconds_count", provider=name, outcome="ok")
        assert calls >= 2 + len(RETRIED)
        timeouts = cloud_worker.metric("llmrouter_provider_call_duration_seconds_count", provider=name,
                                       outcome="timeout")
        assert timeouts == 1


async def test_sequential_requests_reuse_the_providers_pooled_connections(cloud_worker: WorkerProcess,
                                                                          sims: SimulatorThread):
    """20 requests one after another to one provider open at most pool-size (max_concurrent) connections,
    counted by the simulator per TCP connection; after the earlier tests' traffic the pool is warm, so
    the count since the reset may well be 0 (the registration test counts a cold pool)."""
    sim = sim_of(sims, "together")
    sims.call(sim.reset)
    async with RouterClient(cloud_worker.settings) as client:
        for _ in range(20):
            record, _ = await ask(client, "together")
            assert record["status"] == "ok"
    stats = sims.call(sim.stats)
    assert stats["requests"]["openai"] == 20
    assert stats["connections_opened"] <= POOL_SIZE and stats["connections_open"] <= POOL_SIZE


async def test_the_registry_view_shows_each_providers_health_latency_and_cost(cloud_worker: WorkerProcess):
    """/providers/ lists every provider in chain order with its capabilities, health check result,
    recent latency, error rate and spend; premium ones are marked emergency-only."""
    status, view = cloud_worker.get_json("/providers/")
    assert status == 200
    by_name = {p["name"]: p for p in view["providers"]}
    assert list(by_name) == ["local", "huggingface", "together", "openai", "anthropic", "compat"]
    together = by_name["together"]
    assert together["available"] and together["capabilities"]["streaming"]
    assert together["capabilities"]["models"] == [MODEL["together"]]
    assert together["stats"]["health"]["healthy"] is True and together["stats"]["calls"] > 0
    assert together["stats"]["latency_p50_ms"] > 0 and together["stats"]["cost_usd"] > 0
    assert by_name["openai"]["emergency_only"] and not by_name["compat"]["emergency_only"]
    assert by_name["local"]["available"] is False and "disabled" in by_name["local"]["reason"]


async def test_the_api_key_appears_nowhere_the_router_writes(cloud_worker: WorkerProcess):
    """After every error class (auth failures included): not in the worker's log, its web views,
    its metrics, the results, the stream or the DLQ."""
    texts = [cloud_worker.log_tail(100_000)]
    for path in ("/health/", "/providers/"):
        texts.append(str(cloud_worker.get_json(path)[1]))
    texts.append(cloud_worker.get_text("/metrics/"))
    settings = cloud_worker.settings
    for topic in ("llm.results", "llm.stream", "llm.dlq"):
        seen = await read_topic_to_end(settings.topic(topic), settings.kafka.partitions, want=set(), timeout_s=5)
        texts += [m.value.decode("latin-1") for messages in seen.values() for m in messages]
    assert len(texts) > 10
    assert not [text for text in texts if API_KEY in text]
