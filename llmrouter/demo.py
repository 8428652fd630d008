"""``llmrouter demo``: the main job on the embedded default.

Brings up Kafka and Redis unless they answer, makes sure a local model exists
(a tiny model of TinyLlama's shape, int8, when no real export is configured),
starts a worker, sends a mixed-priority workload through Kafka — Avro and
JSON, one streamed request, one duplicate, one undecodable, one over a
limit — and prints what came back.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from llmrouter import infra
from llmrouter.client import RouterClient
from llmrouter.contract import PRIORITIES
from llmrouter.settings import Settings
from llmrouter.workerproc import WorkerProcess

TINY_DIR = Path("var/models/tiny-llama")
WORKER_LOG = Path("var/logs/demo-worker.log")
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
    worker = WorkerProcess(settings, log_path=WORKER_LOG, env=env).start()
    try:
        worker.wait_ready(timeout_s=120)
        print(f"demo: worker ready (pid {worker.pid}, log {WORKER_LOG}); sending {requests} requests")
        return asyncio.run(_workload(settings, requests))
    finally:
        if keep_worker:
            print(f"demo: worker left running (pid {worker.pid}); stop it with `kill {worker.pid}`")
        else:
            worker.stop()


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
