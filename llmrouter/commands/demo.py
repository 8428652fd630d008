"""``llmrouter demo``: the main job on the embedded default.

Brings up Kafka and Redis unless they answer, makes sure a local model exists
(a tiny model of TinyLlama's shape, int8, when no real export is configured),
starts the provider simulator in place of the cloud APIs and a worker, sends
a mixed-priority workload through Kafka — Avro and JSON, one streamed request,
one duplicate, one undecodable, one over a limit — and prints what came back.
Then the cloud scene: complex tasks go to Hugging Face first, a failing
Hugging Face fails over to Together, a 429 is waited out, and a provider
registered at run time takes traffic. Nothing paid is ever called: the
premium providers stay unconfigured in the demo's worker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from llmrouter import infra
from llmrouter.wire.client import RouterClient
from llmrouter.wire.contract import PRIORITIES
from llmrouter.providers.spec import ProviderSpec
from llmrouter.commands.providers import produce_registration
from llmrouter.config.settings import Settings
from llmrouter.simulator.process import SimulatorProcess
from llmrouter.testing.worker_process import WorkerProcess

TINY_DIR = Path("var/models/tiny-llama")
WORKER_LOG = Path("var/logs/demo-worker.log")
SIM_LOG = Path("var/logs/demo-simulator.log")
SIM_KEY_ENV = "DEMO_SIMULATOR_KEY"  # a throwaway key the simulator demands and the worker sends (a registered
# provider may never take an LLMROUTER_* variable)
PAID_KEY_ENVS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LLMROUTER_SECRETS_FILE")
DEMO_HF_RATE_LIMIT = "600/minute"
PROMPTS = (
    "Summarize: Kafka keeps an ordered log per partition.",
    "Classify the sentiment of: the router answered quickly.",
    "What is a circuit breaker?",
    "Extract the city from: I flew to Lisbon on Monday.",
    "Write one sentence about token buckets.",
    "Explain idempotency in one line.",
)


def run_demo(settings: Settings, *, requests: int, keep_worker: bool) -> int:
    infra.up(bootstrap=settings.kafka.bootstrap_servers, redis_url=settings.redis.url)
    env = dict(os.environ)
    model_path = settings.local_config.model_path
    if not model_path.is_dir():
        model_path = ensure_tiny_model(TINY_DIR)
        env["LLMROUTER__LOCAL_CONFIG__MODEL_PATH"] = str(model_path)
        print(f"demo: no model at {settings.local_config.model_path}; using the tiny int8 model at {model_path} "
              "(random weights: its text is noise, its latencies and token counts are real)")
    key = uuid.uuid4().hex
    sim = SimulatorProcess(log_path=SIM_LOG, env={**os.environ, SIM_KEY_ENV: key},
                           args=["--latency-ms", "40", "--latency-sigma", "0.3", "--api-key-env", SIM_KEY_ENV])
    sim.start()
    print(f"demo: provider simulator at {sim.base_url} stands in for Hugging Face (limit {DEMO_HF_RATE_LIMIT}) "
          f"and Together (log {SIM_LOG}); premium APIs stay unconfigured, so nothing paid is called")
    env = {k: v for k, v in env.items() if k not in PAID_KEY_ENVS} | {
        "LLMROUTER__HUGGINGFACE_CONFIG__ENDPOINT": sim.base_urls()["huggingface"],
        "LLMROUTER__TOGETHER_CONFIG__ENDPOINT": sim.base_urls()["openai"],
        # Hugging Face's own limit (50/hour) would let one call of the demo through: the simulator takes more
        "LLMROUTER__LLM_CONFIG__HUGGINGFACE__RATE_LIMIT": DEMO_HF_RATE_LIMIT,
        "HF_TOKEN": key, "TOGETHER_API_KEY": key, SIM_KEY_ENV: key,
        # the run-time registration of the cloud scene: its key variable and the simulator's address allowed
        "LLMROUTER__REGISTRY__REGISTERED_KEY_ENVS": json.dumps([SIM_KEY_ENV]),
        "LLMROUTER__REGISTRY__REGISTERED_ENDPOINTS": json.dumps([sim.base_urls()["openai"]])}
    worker = WorkerProcess(settings, log_path=WORKER_LOG, env=env).start()
    try:
        worker.wait_ready(timeout_s=120)
        print(f"demo: worker ready (pid {worker.pid}, log {WORKER_LOG}); sending {requests} requests")
        local = asyncio.run(_workload(settings, requests))
        cloud = asyncio.run(_cloud_scene(settings, worker, sim))
        return local or cloud
    finally:
        if keep_worker:
            print(f"demo: worker (pid {worker.pid}) and simulator left running; stop them with "
                  f"`kill {worker.pid}` and `pkill -f 'llmrouter simulate'`")
        else:
            worker.stop()
            sim.stop()


def ensure_tiny_model(base: Path) -> Path:
    """Build the tiny model and its int8 version once; return the int8 directory."""
    from llmrouter.localmodel.build_tiny import build_tiny_model
    from llmrouter.localmodel.quantize import quantize_model

    int8 = base.with_name(base.name + "-int8")
    if not (int8 / "tokenizer.json").is_file():
        print(f"demo: building a tiny model of TinyLlama's shape in {base} (random weights)")
        build_tiny_model(base)
        quantize_model(base, int8)
    return int8


async def _workload(settings: Settings, count: int) -> int:
    started = time.monotonic()
    sent: list[tuple[str, str, str, str]] = []  # request_id, priority, encoding, note
    async with RouterClient(settings) as client:
        for i in range(count):
            priority = PRIORITIES[i % len(PRIORITIES)]
            encoding = "avro" if i % 2 == 0 else "json"
            stream = i == 1
            rid = await client.send({"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 24, "stream": stream},
                                    priority=priority, encoding=encoding)
            sent.append((rid, priority, encoding, "streamed" if stream else ""))
        first = sent[0][0]
        await client.send({"request_id": first, "prompt": PROMPTS[0], "max_tokens": 24}, priority="normal")
        rejected = await client.send({"prompt": "too long an answer", "max_tokens": 10**6}, priority="low")
        sent.append((rejected, "low", "json", "over max_tokens"))
        await client.send_raw(b"\x00\x01 not a request", priority="high")
        await client.wait_for([rid for rid, *_ in sent], timeout_s=300, dead_letters=1)
        collected = await client.wait_for([first], timeout_s=60, results_each=2)
    elapsed = time.monotonic() - started
    print(_summary(sent, collected.results, collected.chunks))
    replay = collected.results[first][1]
    print(f"\nduplicate of {first[:8]}: {'stored result re-emitted, no model call' if replay.replay else 'answered again'}")
    for letter in collected.dead_letters:
        print(f"dead letter from {letter['source_topic']}: {letter['error_code']}: {letter['reason']} "
              f"(original {len(letter['original_value'] or b'')} bytes kept)")
    ok = sum(1 for rid, *_ in sent if collected.results[rid][0].record["status"] == "ok")
    print(f"\n{ok}/{len(sent)} ok in {elapsed:.1f}s through Kafka")
    return 0 if ok == len(sent) - 1 else 1


def _summary(sent: list[tuple[str, str, str, str]], results: dict[str, list[Any]], chunks: dict[str, list]) -> str:
    lines = [f"{'request':10} {'priority':8} {'enc':4} {'status':8} {'path':6} {'provider':9} "
             f"{'latency':>9} {'tokens':>7}  text / note"]
    for rid, priority, encoding, note in sent:
        r = results[rid][0].record
        if note == "streamed":
            note = f"streamed in {len(chunks.get(rid, []))} chunks"
        text = (r["text"] if r["status"] == "ok" else r["error_code"]).replace("\n", " ")[:40]
        lines.append(f"{rid[:8]:10} {priority:8} {encoding:4} {r['status']:8} {r['route']:6} "
                     f"{(r['provider'] or '-'):9} {r['total_latency_ms']:7.0f}ms "
                     f"{r['prompt_tokens']:>3}+{r['completion_tokens']:<3}  {text!r} {note}")
    return "\n".join(lines)


async def _cloud_scene(settings: Settings, worker: WorkerProcess, sim: SimulatorProcess) -> int:
    """Complex tasks through the cloud part of the chain, with faults forced on the simulator."""
    print("\ncloud providers (the simulator, speaking the Hugging Face and OpenAI wire formats):")
    code_task = {"prompt": "Write a function that reverses a linked list.", "task_type": "code_generation",
                 "max_tokens": 24}
    rows: list[tuple[str, dict[str, Any]]] = []
    async with RouterClient(settings) as client:
        rows.append(("complex task: cloud first", await _ask(client, code_task)))
        rows.append(("the same again: answered at intake", await _ask(client, code_task)))
        fresh = {**code_task, "cache_policy": "bypass"}  # the scenes below must reach the providers
        rows.append(("the same, streamed, cache bypassed", await _ask(client, {**fresh, "stream": True})))
        sim.script(["server_error"] * 4, flavor="huggingface")
        rows.append(("hugging face failing (500)", await _ask(client, fresh)))
        sim.script(["rate_limited"], flavor="huggingface")
        rows.append(("hugging face 429, Retry-After 1s", await _ask(client, fresh)))
        spec = ProviderSpec(name="demo-vllm", kind="openai_compatible", endpoint=sim.base_urls()["openai"],
                            api_key_env=SIM_KEY_ENV, models=("demo-llama-8b",))
        await produce_registration(settings, spec.name, spec)
        waited = await _until_listed(worker, spec.name)
        served = await _ask(client, {**code_task, "providers": [spec.name]})
        rows.append((f"registered at run time (seen in {waited * 1000:.0f}ms)", served))
        await produce_registration(settings, spec.name, None)
    for label, record in rows:
        print(f"  {label:40} {record['status']:6} {record['total_latency_ms']:6.0f}ms  {_path(record)}")
    stats = sim.stats()
    print(f"simulator saw {stats['requests']} over {stats['connections_opened']} connection(s); "
          f"outcomes {dict((k, v) for k, v in stats['outcomes'].items() if v)}")
    return 0 if all(record["status"] == "ok" for _, record in rows) else 1


async def _ask(client: RouterClient, request: dict[str, Any]) -> dict[str, Any]:
    rid = await client.send(request, priority="high")
    return (await client.wait_for([rid], timeout_s=60)).results[rid][0].record


async def _until_listed(worker: WorkerProcess, name: str, timeout_s: float = 15.0) -> float:
    started = time.monotonic()
    while name not in {p["name"] for p in worker.get_json("/providers/")[1]["providers"]}:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"the worker did not list {name} within {timeout_s:.0f}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


def _path(record: dict[str, Any]) -> str:
    """The attempts, repeats folded: 'huggingface provider_unavailable x4 -> together ok'; or the cache level."""
    if record.get("route") == "cache":
        return f"cache {record['cache_level']} ({record['provider']}'s answer, no call)"
    tried = [a for a in record["attempts"] if a["outcome"] != "skipped"]
    steps = []
    for (provider, code), group in itertools.groupby(tried, key=lambda a: (a["provider"], a["error_code"] or "ok")):
        count = len(list(group))
        steps.append(f"{provider} {code}" + (f" x{count}" if count > 1 else ""))
    return " -> ".join(steps)
