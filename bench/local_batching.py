"""Benchmark batching of the local model: total tokens/s at each batch size, three ways, in one run.

On one model file (by default a tiny random-weight Llama built and quantized in a temp dir), with the
same prompts and greedy decoding each way, at each ``--batches`` size:

* ``dataflow``: a worker in a child process (topics, app id, web port and data dir of its own; fallback
  chain ``local`` only; ``local_config.batch_size`` = the batch size, ``batching: throughput`` unless
  ``--batching`` says otherwise, so batches fill up) serving requests produced to
  ``llm.requests.normal``; results read from ``llm.results``. ``--rounds`` x batch requests are sent at
  once (after one warm-up batch), and tokens/s is the completion tokens of all results over the time from
  the first send to the last result. The worker's ``/providers/`` view says which batch sizes it ran.
* ``engine``: :meth:`LocalModel.run_batch` on the same prompts, batch by batch, in this process: the
  product's generation loop without Kafka (median of ``--repeats`` runs).
* ``bare``: a plain ONNX Runtime loop doing the same batched greedy decode (left padding, attention
  mask, position ids, KV cache fed back; finished rows keep decoding a filler token), session options as
  the engine's (median of ``--repeats`` runs, alternating with the engine's).

In fp32 every way must produce the same tokens (batched greedy equals lone greedy); the run checks the
counts. In int8 it need not: dynamic quantization computes one activation scale over the whole batch, so a
row's greedy tokens can depend on its batch-mates, and the dataflow's batches need not hold the same rows. Then rows
of different lengths in one batch of ``max(--batches)`` (max_tokens 1/8, 2/8 ... 8/8 of ``--new-tokens``):
the bare loop keeping finished rows in the batch against the same loop dropping them (what the engine
does), to show whether dropping finished rows pays on this model.

Usage::

    .venv/bin/python bench/local_batching.py                     # tiny model, int8, batches 1 2 4 8
    .venv/bin/python bench/local_batching.py --weights fp32 --prompt-tokens 128 --rounds 4
    .venv/bin/python bench/local_batching.py --model-dir models/tinyllama --batches 1 4 --rounds 2

Needs Kafka and Redis for the dataflow part (``.venv/bin/llmrouter infra up``; ``--skip-dataflow``
measures the other two only). Writes ``bench/results/local_batching.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil

from llmrouter.wire.client import RouterClient
from llmrouter.localmodel.build_tiny import build_tiny_model
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationRequest, LocalModel
from llmrouter.localmodel.loading import usable_cores
from llmrouter.localmodel.quantize import MARKER_FILE, quantize_model
from llmrouter.config.settings import Settings
from llmrouter.testing.settings_file import write_worker_settings
from llmrouter.testing.topics import delete_topics

from harness import start_worker

RESULTS = Path(__file__).parent / "results" / "local_batching.json"
WORDS = ("kafka stream table agent worker partition offset batch token model router cache provider request "
         "result priority deadline queue answer prompt local cloud latency budget topic consumer producer").split()


@dataclass
class Way:
    """One way of running at one batch size: tokens made, wall seconds and CPU seconds taken."""

    tokens: int
    seconds: float
    cpu_s: float  # of the process that ran the model (this one, or the worker)
    load_avg: float  # the machine's 1-minute load average at the end: other work sharing the cores
    prefill_s: float = 0.0  # the bare loop only: time spent in prefill calls
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_cpu_s(self) -> float:
        return self.tokens / self.cpu_s


@dataclass
class Row:
    """All ways at one batch size."""

    batch: int
    requests: int
    ways: dict[str, Way]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an exported model dir (default: build a tiny one)")
    parser.add_argument("--weights", choices=["int8", "fp32"], default="int8")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=6, help="batches per batch size (requests = rounds x batch)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the engine and the bare loop (median)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64, help="max_tokens of each request")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime threads (1: CPU seconds then count only the model's own work)")
    parser.add_argument("--batching", choices=["latency", "balanced", "throughput"], default="throughput",
                        help="the worker's batching mode (throughput: batches fill up to batch_size)")
    parser.add_argument("--skip-dataflow", action="store_true", help="engine and bare loop only (no Kafka)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (model, settings, worker logs)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=1408)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


# -- the model and the prompts -------------------------------------------------------------------

def prepare_model(args: argparse.Namespace, tmp: Path) -> Path:
    """The model dir to measure: given, or a tiny one built (and quantized for int8) in ``tmp``."""
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = tmp / "tiny-fp32"
        print(f"building a tiny model: layers={args.layers} hidden={args.hidden} heads={args.heads} "
              f"kv_heads={args.kv_heads} intermediate={args.intermediate} vocab={args.vocab}", flush=True)
        build_tiny_model(model_dir, layers=args.layers, hidden=args.hidden, heads=args.heads,
                         kv_heads=args.kv_heads, intermediate=args.intermediate, vocab_size=args.vocab,
                         max_positions=max(512, 2 * (args.prompt_tokens + args.new_tokens)))
    if args.weights == "int8" and not (model_dir / MARKER_FILE).is_file():
        target = tmp / "int8"
        quantize_model(model_dir, target, progress=lambda line: print(line, flush=True))
        model_dir = target
    return model_dir


def load(model_dir: Path, args: argparse.Namespace, batch: int) -> LocalModel:
    return LocalModel(LocalModelConfig(model_path=model_dir, quantization="int8" if args.weights == "int8" else "none",
                                       inference_threads=args.threads, batch_size=batch,
                                       context_tokens=args.prompt_tokens + args.new_tokens + 8,
                                       max_memory_bytes=64 * 2**30))


def make_prompts(model: LocalModel, count: int, tokens: int, label: str) -> list[str]:
    """``count`` different prompts of ``tokens`` tokens each (by the model's tokenizer), all unique."""
    rng = random.Random(label)
    prompts = []
    for i in range(count):
        words = [f"{label} {i}:"]
        while model.count_tokens(" ".join(words + ["x"])) <= tokens:
            words.append(rng.choice(WORDS))
        prompts.append(" ".join(words))
    return prompts


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# -- engine and bare loop ------------------------------------------------------------------------

def run_engine(model: LocalModel, prompts: list[str], batch: int, new_tokens: int) -> Way:
    """The product's loop: run_batch over the prompts, ``batch`` at a time."""
    requests = [GenerationRequest(prompt=p, max_tokens=new_tokens) for p in prompts]
    tokens, started, cpu = 0, time.perf_counter(), time.process_time()
    for group in range(0, len(requests), batch):
        tokens += sum(r.completion_tokens for r in model.run_batch(requests[group:group + batch]).results)
    return Way(tokens=tokens, seconds=time.perf_counter() - started, cpu_s=time.process_time() - cpu,
               load_avg=os.getloadavg()[0])


def session_for(model: LocalModel, threads: int) -> ort.InferenceSession:
    """A session set up as the engine sets its own."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model.model_file), options, providers=["CPUExecutionProvider"])


def bare_batch(session: ort.InferenceSession, prompts: list[list[int]], budgets: list[int], eos: frozenset[int],
               kv: tuple[int, int], *, drop_finished: bool = False) -> tuple[int, float]:
    """Greedy-decode left-padded ``prompts`` with nothing but session.run; return (tokens made, prefill s).

    Each row stops at end-of-sequence or its budget. Without ``drop_finished`` a finished row keeps
    decoding a filler token (a plain static batch); with it, finished rows are cut out of the batch.
    """
    outputs = [o.name for o in session.get_outputs()]
    past_names = [n.replace("present", "past_key_values", 1) for n in outputs[1:]]
    rows, width = len(prompts), max(len(p) for p in prompts)
    ids = np.zeros((rows, width), np.int64)
    mask = np.zeros((rows, width), np.int64)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):], mask[r, width - len(p):] = p, 1
    feed = {name: np.zeros((rows, kv[0], 0, kv[1]), np.float32) for name in past_names}
    feed.update(input_ids=ids, attention_mask=mask, position_ids=np.maximum(np.cumsum(mask, 1) - 1, 0))
    started = time.perf_counter()
    result = session.run(outputs, feed)
    prefill_s = time.perf_counter() - started
    live = list(range(rows))
    made = [0] * rows
    positions = np.array([[len(p)] for p in prompts], np.int64)
    filler = min(eos) if eos else 0
    while True:
        tokens = result[0][:, -1, :].argmax(axis=-1)
        step = np.full((len(live), 1), filler, np.int64)
        for i, r in enumerate(live):
            if made[r] < budgets[r]:
                token = int(tokens[i])
                if token in eos:
                    budgets[r] = made[r]  # stopped at end-of-sequence
                else:
                    made[r] += 1
                    step[i, 0] = token
        active = [i for i, r in enumerate(live) if made[r] < budgets[r]]
        if not active:
            return sum(made), prefill_s
        past = result[1:]
        if drop_finished and len(active) < len(live):
            index = np.asarray(active)
            live = [live[i] for i in active]
            step, positions, mask = step[index], positions[index], mask[index]
            past = [p[index] for p in past]
        mask = np.concatenate((mask, np.ones((len(live), 1), np.int64)), axis=1)
        feed = dict(zip(past_names, past))
        feed.update(input_ids=step, attention_mask=mask, position_ids=positions)
        result = session.run(outputs, feed)
        positions = positions + 1


def run_bare(model: LocalModel, session: ort.InferenceSession, prompts: list[str], batch: int,
             new_tokens: int) -> Way:
    """The bare loop over the prompts, ``batch`` at a time."""
    ids = [model.encode(p) for p in prompts]
    kv = (model.dims.kv_heads, model.dims.head_dim)
    tokens, prefill_s, started, cpu = 0, 0.0, time.perf_counter(), time.process_time()
    for group in range(0, len(ids), batch):
        rows = ids[group:group + batch]
        made, prefill = bare_batch(session, rows, [new_tokens] * len(rows), model.eos_token_ids, kv)
        tokens, prefill_s = tokens + made, prefill_s + prefill
    return Way(tokens=tokens, seconds=time.perf_counter() - started, cpu_s=time.process_time() - cpu,
               load_avg=os.getloadavg()[0], prefill_s=prefill_s)


def in_process(model: LocalModel, session: ort.InferenceSession, prompts: list[str], batch: int,
               args: argparse.Namespace) -> dict[str, Way]:
    """The engine and the bare loop, alternately ``--repeats`` times after a warm-up of each (blocks of
    whole runs, not interleaved batches: ONNX Runtime's pool threads spin for a while after a run, which
    would slow the other session); the run of median speed of each."""
    runs: dict[str, list[Way]] = {"engine": [], "bare": []}
    for repeat in range(args.repeats + 1):
        engine = run_engine(model, prompts, batch, args.new_tokens)
        bare = run_bare(model, session, prompts, batch, args.new_tokens)
        if repeat:  # the first round warms up
            runs["engine"].append(engine)
            runs["bare"].append(bare)
    return {way: sorted(values, key=lambda w: w.tokens_per_s)[len(values) // 2] for way, values in runs.items()}


def dropping_rows(model: LocalModel, session: ort.InferenceSession, prompts: list[str], new_tokens: int,
                  repeats: int = 5) -> dict[str, Any]:
    """Rows of different lengths in one batch: the static bare loop, the same dropping finished rows,
    and the engine (which drops them); median seconds of ``repeats``."""
    rows = len(prompts)
    budgets = [max(1, new_tokens * (i + 1) // rows) for i in range(rows)]
    ids = [model.encode(p) for p in prompts]
    kv = (model.dims.kv_heads, model.dims.head_dim)
    requests = [GenerationRequest(prompt=p, max_tokens=b, ignore_eos=True) for p, b in zip(prompts, budgets)]
    no_eos: frozenset[int] = frozenset()
    labels = ("bare, rows kept", "bare, rows dropped", "engine (drops rows)")
    timings: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}
    for _ in range(repeats + 1):  # the first round warms up
        for label in labels:
            started, cpu = time.perf_counter(), time.process_time()
            if label == "engine (drops rows)":
                model.run_batch(requests)
            else:
                bare_batch(session, ids, list(budgets), no_eos, kv, drop_finished=label == "bare, rows dropped")
            timings[label].append((time.perf_counter() - started, time.process_time() - cpu))
    seconds = {label: statistics.median(wall for wall, _ in values[1:]) for label, values in timings.items()}
    cpu_s = {label: statistics.median(cpu for _, cpu in values[1:]) for label, values in timings.items()}
    return {"rows": rows, "max_tokens": budgets, "tokens": sum(budgets), "seconds": seconds, "cpu_s": cpu_s,
            "tokens_per_s": {label: sum(budgets) / s for label, s in seconds.items()}}


# -- the dataflow --------------------------------------------------------------------------------

def write_settings(directory: Path, model_dir: Path, args: argparse.Namespace, batch: int) -> tuple[Settings, Path]:
    """Settings of a worker of its own serving only the local model at ``batch``; its topics created."""
    name = uuid.uuid4().hex[:10]
    directory.mkdir(parents=True)
    sections = {
        "worker": {"max_in_flight": 2 * batch},
        "limits": {"default_timeout_s": 600},
        "local_config": {"model_path": str(model_dir), "quantization": "int8" if args.weights == "int8" else "none",
                         "inference_threads": args.threads, "batch_size": batch, "batching": args.batching,
                         "max_queue": 4 * batch},
        "llm_config": {"local": {"max_concurrent": 1, "timeout": 600}},
        "registry": {"health_check_interval_s": 3600},
        "fallback_chain": ["local"],
    }
    return write_worker_settings(directory, topic_prefix=f"benchlb{name}.", app_id=f"llmrouter-benchlb-{name}",
                                 sections=sections)


async def send_all(client: RouterClient, prompts: list[str], new_tokens: int, label: str,
                   worker: psutil.Process) -> tuple[list[dict], float, float]:
    """Send every prompt at once; their results, the seconds from the first send to the last result, and
    the worker's CPU seconds meanwhile."""
    cpu = sum(worker.cpu_times()[:2])
    started = time.monotonic()
    ids = await asyncio.gather(*(client.send({"prompt": p, "max_tokens": new_tokens}) for p in prompts))
    last_print = 0.0
    while (done := sum(1 for rid in ids if rid in client.collected.results)) < len(ids):
        if time.monotonic() - started > 120 + 10 * len(ids):
            raise TimeoutError(f"{label}: {len(ids) - done} result(s) missing")
        if time.monotonic() - last_print >= 2.0:
            print(f"  {label}: {done}/{len(ids)} results", flush=True)
            last_print = time.monotonic()
        await client.poll(0.02)
    elapsed = time.monotonic() - started
    return [client.collected.results[rid][0].record for rid in ids], elapsed, sum(worker.cpu_times()[:2]) - cpu


def run_dataflow(model_dir: Path, prompts: list[str], warmup: list[str], batch: int, args: argparse.Namespace,
                 directory: Path, prefixes: list[str]) -> Way:
    """A worker at ``batch``: one warm-up batch, then every prompt at once through Kafka."""
    settings, path = write_settings(directory, model_dir, args, batch)
    prefixes += [settings.kafka.topic_prefix, f"{settings.worker.app_id}-"]
    worker = start_worker(settings, path, directory)
    try:
        process = psutil.Process(worker.pid)

        async def measure() -> tuple[list[dict], float, float]:
            async with RouterClient(settings) as client:
                await send_all(client, warmup, args.new_tokens, f"batch {batch} warm-up", process)
                return await send_all(client, prompts, args.new_tokens, f"batch {batch}", process)

        records, elapsed, cpu_s = asyncio.run(measure())
        _, providers = worker.get_json("/providers/")
    finally:
        worker.stop()
    bad = [r for r in records if r["status"] != "ok" or r["provider"] != "local"]
    if bad:
        raise RuntimeError(f"batch {batch}: {len(bad)} request(s) not answered ok by local: {bad[0]}")
    batching = next(p for p in providers["providers"] if p["name"] == "local")["batching"]
    return Way(tokens=sum(int(r["completion_tokens"]) for r in records), seconds=elapsed, cpu_s=cpu_s,
               load_avg=os.getloadavg()[0], detail={"batch_sizes": batching["sizes"], "reasons": batching["reasons"]})


# -- report --------------------------------------------------------------------------------------

def table(rows: list[Row]) -> str:
    """Tokens/s (wall) and tokens per CPU second of each way, each with its ratio to the first batch size."""
    ways = list(rows[0].ways)
    first = rows[0].ways
    head = " | ".join(f"{w} tok/s | {w} tok/CPU-s" for w in ways)
    lines = [f"| batch | requests | tokens ({'/'.join(ways)}) | {head} | bare prefill share | bare decode-only tok/s "
             "| load avg | dataflow batches run |",
             "| --- | --- | --- | " + " | ".join("--- | ---" for _ in ways) + " | --- | --- | --- | --- |"]
    first_decode = first["bare"].tokens / (first["bare"].seconds - first["bare"].prefill_s)
    for r in rows:
        cells = " | ".join(
            f"{r.ways[w].tokens_per_s:.0f} (x{r.ways[w].tokens_per_s / first[w].tokens_per_s:.2f}) | "
            f"{r.ways[w].tokens_per_cpu_s:.0f} (x{r.ways[w].tokens_per_cpu_s / first[w].tokens_per_cpu_s:.2f})"
            for w in ways)
        bare = r.ways["bare"]
        sizes = r.ways["dataflow"].detail.get("batch_sizes", "") if "dataflow" in r.ways else ""
        load = max(way.load_avg for way in r.ways.values())
        tokens = "/".join(str(r.ways[w].tokens) for w in ways)
        decode = bare.tokens / (bare.seconds - bare.prefill_s)
        lines.append(f"| {r.batch} | {r.requests} | {tokens} | {cells} | {bare.prefill_s / bare.seconds:.0%} | "
                     f"{decode:.0f} (x{decode / first_decode:.2f}) | {load:.1f} | {sizes} |")
    return "\n".join(lines)


def plot(rows: list[Row], dropping: dict[str, Any], path: Path, title: str) -> Path:
    """Tokens/s and tokens per CPU second by batch size for each way, then the dropped-rows comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ways = list(rows[0].ways)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [3, 3, 2]})
    x = np.arange(len(rows))
    width = 0.8 / len(ways)
    for ax, attr, label in ((axes[0], "tokens_per_s", "generated tokens/s, all rows (wall clock)"),
                            (axes[1], "tokens_per_cpu_s", "generated tokens per CPU second")):
        for i, way in enumerate(ways):
            values = [getattr(r.ways[way], attr) for r in rows]
            bars = ax.bar(x + (i - (len(ways) - 1) / 2) * width, values, width, label=way)
            for bar, value in zip(bars, values):
                ax.annotate(f"x{value / values[0]:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [f"batch {r.batch}" for r in rows])
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    axes[0].set_title(title, fontsize=8)
    axes[1].set_title("the same, per CPU second of the process running the model", fontsize=8)
    right = axes[2]
    labels = list(dropping["tokens_per_s"])
    right.bar([label.replace(", ", ",\n").replace(" (", "\n(") for label in labels],
              [dropping["tokens_per_s"][k] for k in labels], color=["tab:gray", "tab:green", "tab:orange"])
    right.set_ylabel("tokens/s")
    right.set_title(f"one batch of {dropping['rows']} rows, max_tokens {dropping['max_tokens'][0]}.."
                    f"{dropping['max_tokens'][-1]}", fontsize=8)
    right.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill runs the cleanup below, as Ctrl-C does
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="llmrouter-bench-batching-"))
    prefixes: list[str] = []
    try:
        model_dir = prepare_model(args, tmp)
        model = load(model_dir, args, max(args.batches))
        session = session_for(model, args.threads)
        print(f"model {model_dir} ({args.weights}), {model.threads} thread(s), prompts of {args.prompt_tokens} "
              f"tokens, max_tokens {args.new_tokens}, {args.rounds} batches per size", flush=True)
        rows: list[Row] = []
        for batch in args.batches:
            prompts = make_prompts(model, args.rounds * batch, args.prompt_tokens, f"b{batch}")
            print(f"batch {batch}: {len(prompts)} requests", flush=True)
            ways = in_process(model, session, prompts, batch, args)
            print(f"  engine   {ways['engine'].tokens_per_s:8.1f} tok/s (median of {args.repeats})", flush=True)
            print(f"  bare ORT {ways['bare'].tokens_per_s:8.1f} tok/s (median of {args.repeats})", flush=True)
            if not args.skip_dataflow:
                warmup = make_prompts(model, batch, args.prompt_tokens, f"warm{batch}")
                ways["dataflow"] = run_dataflow(model_dir, prompts, warmup, batch, args, tmp / f"worker-{batch}",
                                                prefixes)
                print(f"  dataflow {ways['dataflow'].tokens_per_s:8.1f} tok/s, batches run "
                      f"{ways['dataflow'].detail['batch_sizes']}", flush=True)
            counts = {w: way.tokens for w, way in ways.items()}
            if len(set(counts.values())) != 1:
                if args.weights == "fp32":
                    raise RuntimeError(f"batch {batch}: the ways made different numbers of tokens {counts}")
                print(f"  tokens made differ {counts}: int8 activations are quantized with one scale per "
                      "batch, so a row's greedy tokens depend on its batch-mates", flush=True)
            order = ["dataflow", "engine", "bare"]
            rows.append(Row(batch=batch, requests=len(prompts), ways={w: ways[w] for w in order if w in ways}))
        print("rows of different lengths in one batch...", flush=True)
        dropping = dropping_rows(model, session, make_prompts(model, max(args.batches), args.prompt_tokens, "drop"),
                                 args.new_tokens)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    finally:
        if prefixes:
            delete_topics(prefixes)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    runtime_s = time.monotonic() - started
    title = (f"{args.weights}, {args.threads} thread(s), {args.prompt_tokens}-token prompts, up to {args.new_tokens} "
             f"new tokens, greedy")
    print(f"\n{title}; {usable_cores()} usable cores; {runtime_s:.0f} s in all\n")
    print(table(rows))
    print(f"\none batch of {dropping['rows']} rows with max_tokens {dropping['max_tokens']} (median of 5):")
    for label, value in dropping["tokens_per_s"].items():
        print(f"  {label:22s} {value:8.1f} tok/s  ({dropping['seconds'][label] * 1000:.0f} ms, "
              f"{dropping['cpu_s'][label] * 1000:.0f} ms CPU)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "usable_cores": usable_cores(), "runtime_s": runtime_s,
        "rows": [{"batch": r.batch, "requests": r.requests,
                  "ways": {w: asdict(way) | {"tokens_per_s": way.tokens_per_s, "tokens_per_cpu_s": way.tokens_per_cpu_s}
                           for w, way in r.ways.items()}}
                 for r in rows],
        "dropping_finished_rows": dropping,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    print(f"wrote {plot(rows, dropping, args.out.with_suffix('.png'), title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
