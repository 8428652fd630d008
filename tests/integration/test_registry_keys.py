"""Issue 19, item 1 (critical): a record on ``llm.providers`` never gets a worker's API or
admin key at an endpoint of its choosing; item 2: a premium-kind provider under another name
is capped by the premium budget.

The attacker is anyone who can produce to the topic. Here a worker holds known values of
``OPENAI_API_KEY``, ``LLMROUTER_ADMIN_KEY`` and a key the settings let registered providers use
(``PROXY_KEY``), with signed registrations on and health checks every second. Records are
produced straight to the topic, signed with the registry key (so each is refused for its own
rule, not its signature), plus one badly signed record: every one of them points at a capture
server that records each request's headers and body. An allowed registration made with the
real CLI (which signs it) shows the path works: its server, on the allow-list, gets
``PROXY_KEY`` and answers requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from llmrouter.registry.signing import SIGNATURE_HEADER, sign
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from tests.conftest import BOOTSTRAP, SimulatorThread, isolated_settings, start_worker
from tests.integration.test_registry import read_events

pytestmark = pytest.mark.kafka
LLMROUTER = str(Path(sys.executable).with_name("llmrouter"))

KEYS = {"OPENAI_API_KEY": f"sk-openai-{uuid.uuid4().hex}", "LLMROUTER_ADMIN_KEY": f"admin-{uuid.uuid4().hex}",
        "PROXY_KEY": f"proxy-{uuid.uuid4().hex}", "LLMROUTER_REGISTRY_KEY": f"registry-{uuid.uuid4().hex}"}
SECRETS = (KEYS["OPENAI_API_KEY"], KEYS["LLMROUTER_ADMIN_KEY"])


class CaptureServer:
    """An HTTP server that records every request (method, path, headers, body) and answers like an
    OpenAI-compatible API: 200 with a model list on GET, a chat completion on POST."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                capture.requests.append({"method": self.command, "path": self.path,
                                         "headers": dict(self.headers.items()), "body": body})

            def _answer(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's names)
                self._record()
                self._answer({"object": "list", "data": [{"id": "m", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                self._record()
                self._answer({"id": "c1", "object": "chat.completion", "model": "m", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "captured"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def seen(self) -> str:
        """Every header and body received, as one text to search."""
        return json.dumps(list(self.requests))


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[CaptureServer, CaptureServer]]:
    with CaptureServer() as attacker, CaptureServer() as allowed:
        yield attacker, allowed


@pytest.fixture(scope="module")
def guarded_worker(kafka_and_redis: None, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                   servers: tuple[CaptureServer, CaptureServer]) -> Iterator[tuple[WorkerProcess, Path]]:
    _, allowed = servers
    directory = tmp_path_factory.mktemp("guarded-worker")
    settings, path = isolated_settings(
        directory, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
        # the settings' own openai: its key, at an address that refuses at once (no call leaves the machine)
        premium_config={"openai": {"endpoint": "http://127.0.0.1:1/v1"}},
        registry={"health_check_interval_s": 1, "registered_key_envs": ["PROXY_KEY"],
                  "registered_endpoints": [f"{allowed.url}/v1"], "signing_key_env": "LLMROUTER_REGISTRY_KEY"})
    proc = start_worker(path, settings, directory / "worker.log", consuming_only=True, env=KEYS)
    yield proc, path
    proc.stop()


async def produce(topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


def signed(key: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(SIGNATURE_HEADER, sign(KEYS["LLMROUTER_REGISTRY_KEY"], key.encode(), value))]


def wait_until(condition, what: str, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s}s: {what}")


async def test_no_record_on_the_topic_gets_our_keys_and_each_refusal_is_shown(guarded_worker, servers):
    """(a) a record keyed openai at the capture server, (b) a new name asking for the admin key's
    variable, (c) a new name keyed to an endpoint off the allow-list, (d) a badly signed one: none is
    applied; after requests and several health checks the capture server has seen no request at all
    (so neither key); /providers/ lists each as rejected with its reason; each is an event on
    llm.events. An allowed, CLI-signed registration serves with its own key only."""
    worker, settings_path = guarded_worker
    attacker, allowed = servers
    topic, codec = worker.settings.topic("llm.providers"), Codec()
    hostile = {
        "openai": ({"name": "openai", "kind": "openai", "endpoint": f"{attacker.url}/v1", "models": ["gpt-4o-mini"],
                    "health_check_url": f"{attacker.url}/health", "price_input_per_1k_usd": 1.0,
                    "price_output_per_1k_usd": 1.0}, True, "defined in the settings file"),
        "admin-leak": ({"name": "admin-leak", "kind": "openai_compatible", "endpoint": f"{attacker.url}/v1",
                        "api_key_env": "LLMROUTER_ADMIN_KEY", "models": ["m"]}, True, "llm-router's own variables"),
        "off-list": ({"name": "off-list", "kind": "openai_compatible", "endpoint": f"{attacker.url}/v1",
                      "api_key_env": "PROXY_KEY", "models": ["m"],
                      "health_check_url": f"{attacker.url}/health"}, True, "not in registry.registered_endpoints"),
        "forged": ({"name": "forged", "kind": "openai_compatible", "endpoint": f"{attacker.url}/v1",
                    "api_key_env": "", "models": ["m"]}, False, "bad signature"),
    }
    for name, (record, good_signature, _) in hostile.items():
        value = codec.encode_avro("ProviderConfig", record)
        headers = signed(name, value) if good_signature else [(SIGNATURE_HEADER, b"v1=" + b"0" * 64)]
        await produce(topic, name, value, headers)

    cli_env = {**os.environ, "LLMROUTER_SETTINGS": str(settings_path),
               "LLMROUTER_REGISTRY_KEY": KEYS["LLMROUTER_REGISTRY_KEY"]}
    done = await asyncio.to_thread(subprocess.run, [
        LLMROUTER, "providers", "register", "good-proxy", "--kind", "openai_compatible", "--endpoint",
        f"{allowed.url}/v1", "--api-key-env", "PROXY_KEY", "--model", "m"], env=cli_env, capture_output=True,
        text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: "good-proxy" in {p["name"] for p in worker.get_json("/providers/")[1]["providers"]},
               "good-proxy listed")

    async with RouterClient(worker.settings) as client:
        ids = [await client.send({"prompt": f"to {name}?", "max_tokens": 4, "providers": [name]})
               for name in [*hostile, "good-proxy"]]
        ids.append(await client.send({"prompt": "anyone?", "max_tokens": 4}))
        results = (await client.wait_for(ids, timeout_s=60)).results
    checks = len([r for r in allowed.requests if r["method"] == "GET"])
    wait_until(lambda: len([r for r in allowed.requests if r["method"] == "GET"]) >= checks + 2,
               "two more health checks of good-proxy")  # health checks ran well after every hostile record
    leaked = [name for name, secret in zip(("OPENAI_API_KEY", "LLMROUTER_ADMIN_KEY"), SECRETS)
              if secret in attacker.seen()]
    assert leaked == [], f"{leaked} reached the capture server in {len(attacker.requests)} requests"
    assert attacker.requests == [], attacker.requests[:3]
    records = [results[rid][0].record for rid in ids]
    assert records[-2]["status"] == "ok" and records[-2]["provider"] == "good-proxy"
    assert records[0]["status"] == "error"  # the settings' openai, at its own address (which refuses)
    assert {r["error_code"] for r in records[1:4]} == {"unknown_provider"}  # never installed
    assert f"Bearer {KEYS['PROXY_KEY']}" in allowed.seen()  # the allowed one got the key meant for it ...
    assert not any(secret in allowed.seen() for secret in SECRETS)  # ... and never ours

    view = worker.get_json("/providers/")[1]
    rejected = {item["name"]: item["reason"] for item in view["rejected"]}
    for name, (_, _, reason) in hostile.items():
        assert reason in rejected.get(name, ""), (name, rejected)
    openai = next(p for p in view["providers"] if p["name"] == "openai")
    assert (openai["source"], openai["endpoint"]) == ("settings", "http://127.0.0.1:1/v1")
    for name, (_, _, reason) in hostile.items():  # provider:openai also has its breaker's events
        events = await read_events(worker, f"provider:{name}", count=1)
        (refused,) = [e for e in events if e["kind"] == "provider_refused"]
        assert reason in refused["data"]["reason"] and refused["data"]["offset"].isdigit()


# ---- item 2: the premium budget follows the kind -------------------------------------------------------------

BUDGET_USD = 0.1  # $0.05 per partition of two
PRICE_PER_1K = 1.0  # a request of ~6 prompt + 16 max_tokens reserves ~$0.02


async def test_an_openai_kind_provider_under_another_name_is_capped_by_the_premium_budget(
        kafka_and_redis, tiny_model_dir, tmp_path):
    """gpt-proxy (kind openai, from providers:) is paid from premium_config.usage_limit: past it, requests
    are rejected with budget_exceeded and never reach the provider."""
    with SimulatorThread(SimProfile(latency_ms=5, token_delay_ms=0, reply_words=8)) as sims:
        (sim,) = sims.sims
        settings, path = await asyncio.to_thread(
            isolated_settings, tmp_path, tiny_model_dir, local_config={"enabled": False}, cache={"enabled": False},
            premium_config={"usage_limit": f"${BUDGET_USD}/month"},
            providers={"gpt-proxy": {"kind": "openai", "endpoint": sim.base_urls()["openai"],
                                     "api_key_env": "SIM_KEY", "models": ["gpt-4o-mini"],
                                     "price_input_per_1k_usd": PRICE_PER_1K, "price_output_per_1k_usd": PRICE_PER_1K}},
            fallback_chain=["gpt-proxy"])
        worker = start_worker(path, settings, tmp_path / "worker.log", env={"SIM_KEY": "sk-sim"})
        try:
            async with RouterClient(settings) as client:
                ids = [await client.send({"prompt": f"budget {i} {uuid.uuid4()}", "max_tokens": 16})
                       for i in range(24)]
                collected = await client.wait_for(ids, timeout_s=120)
            records = [collected.results[rid][0].record for rid in ids]
            ok = [r for r in records if r["status"] == "ok"]
            refused = [r for r in records if r["status"] != "ok"]
            assert ok and refused, f"{len(ok)} of {len(ids)} served: the premium budget did not cap gpt-proxy"
            assert {(r["status"], r["error_code"]) for r in refused} == {("rejected", "budget_exceeded")}
            assert sum(r["cost_usd"] for r in ok) <= BUDGET_USD
            assert sims.call(sim.stats)["requests"]["openai"] == len(ok)
        finally:
            worker.stop()
