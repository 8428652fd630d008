"""Benchmark the local model engine against a bare ONNX Runtime greedy loop.

For fp32 and int8 weights and each thread count, measure (median of
``--repeats``): prefill seconds, decode tokens per second and total seconds
for a ``--prompt-tokens`` prompt and ``--new-tokens`` greedy tokens, both
through :class:`LocalModel` and through a bare ``InferenceSession.run`` loop
on the same file, so the overhead of our loop is visible. Thread counts
above the core count are run on purpose (the engine's clamp is bypassed) to
show why the clamp exists.

Usage::

    .venv/bin/python bench/local_model.py                      # builds a tiny model in a temp dir
    .venv/bin/python bench/local_model.py --model-dir models/tinyllama --weights int8

Writes ``bench/results/local_model.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from llmrouter.localmodel.build_tiny import build_tiny_model
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationRequest, LocalModel
from llmrouter.localmodel.loading import usable_cores
from llmrouter.localmodel.quantize import MARKER_FILE, quantize_model

RESULTS = Path(__file__).parent / "results" / "local_model.json"


@dataclass(frozen=True)
class Timing:
    """Median timings of one loop on one model and thread count."""

    prefill_s: float
    decode_tok_s: float
    total_s: float


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    weights: str
    threads: int
    engine: Timing
    bare: Timing

    @property
    def overhead_pct(self) -> float:
        """How much longer the engine's total is than the bare loop's, in per cent."""
        return 100.0 * (self.engine.total_s / self.bare.total_s - 1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: model, shape, threads, weights, prompt and repeat counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an exported model dir (default: build a tiny one)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--weights", nargs="+", choices=["fp32", "int8"], default=["fp32", "int8"])
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=1408)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def session_for(model_file: Path, threads: int) -> ort.InferenceSession:
    """A session set up as the engine sets its own (threads as given, sequential)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def bare_loop(session: ort.InferenceSession, prompt: np.ndarray, new_tokens: int, kv_shape: tuple[int, int]) -> tuple[float, float]:
    """Greedy decode with nothing but session.run; return (prefill seconds, decode seconds)."""
    outputs = [o.name for o in session.get_outputs()]
    past_names = [n.replace("present", "past_key_values") for n in outputs[1:]]
    length = prompt.shape[1]
    feed = {name: np.zeros((1, kv_shape[0], 0, kv_shape[1]), np.float32) for name in past_names}
    feed.update(input_ids=prompt, attention_mask=np.ones((1, length), np.int64),
                position_ids=np.arange(length, dtype=np.int64)[None])
    started = time.perf_counter()
    result = session.run(outputs, feed)
    token = int(result[0][0, -1].argmax())
    prefilled = time.perf_counter()
    for step in range(new_tokens - 1):
        total = length + step + 1
        feed = dict(zip(past_names, result[1:]))
        feed.update(input_ids=np.array([[token]], np.int64), attention_mask=np.ones((1, total), np.int64),
                    position_ids=np.array([[total - 1]], np.int64))
        result = session.run(outputs, feed)
        token = int(result[0][0, -1].argmax())
    return prefilled - started, time.perf_counter() - prefilled


def timing(prefills: list[float], totals: list[float], new_tokens: int) -> Timing:
    """Medians; decode rate from the decode part (total minus prefill) of each repeat."""
    decode_rates = [(new_tokens - 1) / (t - p) for p, t in zip(prefills, totals)]
    return Timing(prefill_s=statistics.median(prefills), decode_tok_s=statistics.median(decode_rates),
                  total_s=statistics.median(totals))


def measure(model_dir: Path, weights: str, threads: int, args: argparse.Namespace) -> Row:
    """Time the engine and the bare loop on one model file and thread count."""
    config = LocalModelConfig(model_path=model_dir, quantization="int8" if weights == "int8" else "none",
                              inference_threads=threads, context_tokens=args.prompt_tokens + args.new_tokens + 1,
                              max_memory_bytes=64 * 2**30)
    model = LocalModel(config, allow_oversubscribe=True)
    rng = np.random.default_rng(0)
    prompt = rng.integers(3, model.dims.vocab_size, size=args.prompt_tokens).tolist()
    one = GenerationRequest(prompt="", max_tokens=1, ignore_eos=True)
    full = GenerationRequest(prompt="", max_tokens=args.new_tokens, ignore_eos=True)
    session = session_for(model.model_file, threads)
    prompt_array = np.array([prompt], dtype=np.int64)
    kv_shape = (model.dims.kv_heads, model.dims.head_dim)
    # Each loop runs in its own block after a warm-up: ONNX Runtime's pool threads spin for a
    # while after a run, so interleaving two sessions would slow whichever runs second.
    engine_prefill, engine_total, bare_prefill, bare_total = [], [], [], []
    model.generate_from_ids(prompt, full)
    for _ in range(args.repeats):
        started = time.perf_counter()
        model.generate_from_ids(prompt, one)
        engine_prefill.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.generate_from_ids(prompt, full)
        engine_total.append(time.perf_counter() - started)
    bare_loop(session, prompt_array, args.new_tokens, kv_shape)
    for _ in range(args.repeats):
        prefill_s, decode_s = bare_loop(session, prompt_array, args.new_tokens, kv_shape)
        bare_prefill.append(prefill_s)
        bare_total.append(prefill_s + decode_s)
    return Row(weights=weights, threads=threads, engine=timing(engine_prefill, engine_total, args.new_tokens),
               bare=timing(bare_prefill, bare_total, args.new_tokens))


def table(rows: list[Row]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| weights | threads | prefill s | decode tok/s | total s | bare prefill s | bare decode tok/s | bare total s | overhead |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.weights} | {r.threads} | {r.engine.prefill_s:.4f} | {r.engine.decode_tok_s:.1f} | "
            f"{r.engine.total_s:.4f} | {r.bare.prefill_s:.4f} | {r.bare.decode_tok_s:.1f} | "
            f"{r.bare.total_s:.4f} | {r.overhead_pct:+.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build or take a model, quantize it, measure every combination, print and save the table."""
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmrouter-bench-") as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(tmp) / "tiny"
            print(f"building a tiny model: layers={args.layers} hidden={args.hidden} heads={args.heads} "
                  f"kv_heads={args.kv_heads} intermediate={args.intermediate} vocab={args.vocab}", flush=True)
            build_tiny_model(model_dir, layers=args.layers, hidden=args.hidden, heads=args.heads,
                             kv_heads=args.kv_heads, intermediate=args.intermediate, vocab_size=args.vocab,
                             max_positions=max(512, args.prompt_tokens + args.new_tokens + 1))
        dirs = {"fp32": model_dir}
        if "int8" in args.weights and (model_dir / MARKER_FILE).is_file():
            dirs["int8"] = model_dir  # already written by `llmrouter model quantize`
        elif "int8" in args.weights:
            int8_dir = Path(tmp) / "int8"
            quantize_model(model_dir, int8_dir, progress=lambda line: print(line, flush=True))
            dirs["int8"] = int8_dir
        rows = []
        for weights in args.weights:
            for threads in args.threads:
                print(f"measuring {weights} with {threads} thread(s) ({args.repeats} repeats)...", flush=True)
                row = measure(dirs[weights], weights, threads, args)
                print(f"  engine {row.engine.total_s:.4f} s, bare {row.bare.total_s:.4f} s, "
                      f"{row.engine.decode_tok_s:.1f} tok/s, overhead {row.overhead_pct:+.1f} %", flush=True)
                rows.append(row)
    print(f"\n{args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, greedy, median of {args.repeats}; "
          f"{usable_cores()} usable cores; {time.monotonic() - started:.0f} s in all\n")
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "usable_cores": usable_cores(),
        "rows": [asdict(r) | {"overhead_pct": r.overhead_pct} for r in rows],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    print(f"wrote {plot(rows, args.out.with_suffix('.png'))}")
    return 0


def plot(rows: list[Row], path: Path) -> Path:
    """Decode tokens/s per thread count, ours beside the bare loop, one panel per weights kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r.weights for r in rows})
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        mine = [r for r in rows if r.weights == kind]
        x = np.arange(len(mine))
        ax.bar(x - 0.2, [r.engine.decode_tok_s for r in mine], 0.4, label="llm-router loop")
        ax.bar(x + 0.2, [r.bare.decode_tok_s for r in mine], 0.4, label="bare ONNX Runtime loop")
        ax.set_xticks(x, [f"{r.threads} thread{'s' if r.threads > 1 else ''}" for r in mine])
        ax.set_title(f"{kind}: decode tokens/s (higher is better)")
        ax.set_ylabel("tokens/s")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
