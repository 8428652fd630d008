"""Benchmark the semantic cache: hit rate, false-hit rate and cost, on the labelled pairs kept in tests.

``tests/data/paraphrase_pairs.jsonl`` holds pairs of prompts, each labelled a paraphrase (the same request in
other words: serving one's answer to the other is right) or not (a different request, many of them hard: the
same words with another entity, number, polarity or task: serving it is a wrong answer). For every threshold
from 0.50 to 0.99 and for each set of guard rules (:mod:`llmrouter.cache.semantic_guard`):

* ``hit``: the share of paraphrase pairs whose second prompt would be served the first one's answer;
* ``false``: the same share among non-paraphrase pairs: wrong answers served.

Pairs are scored as the index scores them: the cosine similarity of the packaged model's vectors of the two
texts as :func:`~llmrouter.cache.semantic.semantic_text` makes them, then the guard. Then the whole set goes
through a real :class:`~llmrouter.cache.semantic.SemanticIndex` at the default threshold: every first prompt
added, every second prompt looked up among all of them, so a prompt may also be served another pair's answer
(counted as a wrong hit). Costs: model load, embedding per prompt, guard per pair, and ``nearest`` over a
bucket of 1,000 and 4,000 entries.

Usage::

    .venv/bin/python bench/semantic_cache.py            # writes bench/results/semantic_cache.json and .png

No Kafka, Redis or network needed (the model ships inside the ``wordllama`` wheel: the ``semantic`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.cache.embedding import StaticEmbedder
from llmrouter.cache.normalise import Templates
from llmrouter.cache.semantic import SemanticIndex, semantic_text
from llmrouter.cache.semantic_guard import RULES, anchors_of, mismatch
from llmrouter.wire.contract import Request
from llmrouter.config.settings import CacheSettings

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "tests" / "data" / "paraphrase_pairs.jsonl"
RESULTS = ROOT / "bench" / "results" / "semantic_cache.json"
THRESHOLDS = [round(0.50 + 0.01 * step, 2) for step in range(50)]
GUARDS: dict[str, tuple[str, ...]] = {  # name -> rules, from none to all
    "none": (),
    "numbers+names+quotes": ("numbers", "names", "quotes"),
    "+negations": ("numbers", "names", "quotes", "negations"),
    "all (default)": RULES,
}
TEMPLATES = Templates()


def load_pairs(path: Path = PAIRS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def request_of(text: str, index: int = 0) -> Request:
    return Request(request_id=f"bench-{index}", prompt=text)


def upper_bound(wrong: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate seen ``wrong`` times in ``trials`` (0 of n: about 3/n)."""
    def at_most(rate: float) -> float:  # P(X <= wrong) for X ~ Binomial(trials, rate)
        return sum(math.comb(trials, k) * rate ** k * (1 - rate) ** (trials - k) for k in range(wrong + 1))
    low, high = wrong / trials, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if at_most(middle) > 1 - confidence else (low, middle)
    return high


def curves(similarities: np.ndarray, paraphrase: np.ndarray, passes: np.ndarray) -> list[dict[str, float]]:
    """Hit and false-hit rate at every threshold, for one guard (``passes``: pairs the guard lets through)."""
    out = []
    for threshold in THRESHOLDS:
        served = (similarities >= threshold) & passes
        out.append({"threshold": threshold, "hit_rate": float(served[paraphrase].mean()),
                    "false_hit_rate": float(served[~paraphrase].mean())})
    return out


def through_index(embedder: StaticEmbedder, pairs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Every first prompt in one index, every second prompt looked up among all of them."""
    index = SemanticIndex(embedder, threshold=threshold, max_entries=10_000)
    key_of = {}
    for number, pair in enumerate(pairs):
        key_of.setdefault(pair["a"], f"key-{number}")
        index.add(request_of(pair["a"]), key_of[pair["a"]])
    outcomes: Counter[str] = Counter()
    wrong = []
    for pair in pairs:
        match = index.nearest(request_of(pair["b"]))
        right = pair["paraphrase"] and match is not None and match.cache_key == key_of[pair["a"]]
        if match is None:
            outcomes["paraphrase missed" if pair["paraphrase"] else "different request missed"] += 1
        elif right:
            outcomes["paraphrase served its own answer"] += 1
        else:
            outcomes["paraphrase served a wrong answer" if pair["paraphrase"] else "different request served"] += 1
            served = next(text for text, key in key_of.items() if key == match.cache_key)
            wrong.append({"asked": pair["b"], "served_answer_of": served, "similarity": round(match.similarity, 4)})
    paraphrases = sum(pair["paraphrase"] for pair in pairs)
    return {"threshold": threshold, "outcomes": dict(outcomes), "wrong_answers": wrong,
            "hit_rate": outcomes["paraphrase served its own answer"] / paraphrases,
            "false_hit_rate": (outcomes["different request served"]) / (len(pairs) - paraphrases)}


def costs(embedder: StaticEmbedder, texts: list[str], load_s: float) -> dict[str, float]:
    """Medians (and p99 for ``nearest``) of per-call times: the machine is shared, so means mislead."""
    def per_call_ms(call, items, rounds: int = 20) -> list[float]:
        times = []
        for _ in range(rounds):
            for item in items:
                start = time.perf_counter()
                call(item)
                times.append((time.perf_counter() - start) * 1000)
        return times

    anchors = [anchors_of(text) for text in texts]
    out = {"model_load_s": load_s, "mean_prompt_chars": statistics.fmean(len(text) for text in texts),
           "embed_ms_p50": statistics.median(per_call_ms(lambda text: embedder.embed([text]), texts)),
           "anchors_ms_p50": statistics.median(per_call_ms(anchors_of, texts)),
           "mismatch_us_p50": 1000 * statistics.median(
               per_call_ms(lambda pair: mismatch(*pair), list(zip(anchors, anchors[1:]))))}
    for size in (1_000, 4_000):
        index = SemanticIndex(embedder, threshold=0.99, max_entries=size, max_bucket_entries=size)
        for number in range(size):  # one bucket of distinct prompts, none of which the probes below match
            index.add(request_of(f"Ticket {number}: {texts[number % len(texts)]}"), f"key-{number}")
        times = per_call_ms(index.nearest, [request_of(text) for text in texts], rounds=5)
        out[f"nearest_ms_p50_{size}_entries"] = statistics.median(times)
        out[f"nearest_ms_p99_{size}_entries"] = float(np.percentile(times, 99))
    return out


def plot(path: Path, by_guard: dict[str, list[dict[str, float]]], default: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hits, falses) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for name, rows in by_guard.items():
        x = [row["threshold"] for row in rows]
        hits.plot(x, [100 * row["hit_rate"] for row in rows], label=name)
        falses.plot(x, [100 * row["false_hit_rate"] for row in rows], label=name)
    for axis, title in ((hits, "hit rate on paraphrases (%)"), (falses, "false-hit rate on different requests (%)")):
        axis.axvline(default, color="grey", linestyle=":", label=f"default {default}")
        axis.set_title(title)
        axis.set_xlabel("cosine similarity threshold")
        axis.set_ylim(-2, 102)
        axis.grid(alpha=0.3)
    falses.legend(title="guard rules", fontsize=8)
    fig.suptitle(f"Semantic cache on {PAIRS.name} (wordllama l2_supercat 256-d)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)
    default = CacheSettings().semantic_threshold
    start = time.perf_counter()
    embedder = StaticEmbedder.wordllama()
    load_s = time.perf_counter() - start

    firsts = [semantic_text(request_of(pair["a"]), TEMPLATES) for pair in pairs]
    seconds = [semantic_text(request_of(pair["b"]), TEMPLATES) for pair in pairs]
    similarities = np.einsum("ij,ij->i", embedder.embed(firsts), embedder.embed(seconds))
    paraphrase = np.array([pair["paraphrase"] for pair in pairs])
    blocked_by = {name: [mismatch(anchors_of(a), anchors_of(b), rules) for a, b in zip(firsts, seconds)]
                  for name, rules in GUARDS.items()}
    by_guard = {name: curves(similarities, paraphrase, np.array([why is None for why in blocked]))
                for name, blocked in blocked_by.items()}

    kinds = Counter(pair["kind"] for pair in pairs)
    splits = sorted({pair.get("split", "all") for pair in pairs}, reverse=True)
    guarded = np.array([why is None for why in blocked_by["all (default)"]])
    by_split = {split: curves(similarities[mask], paraphrase[mask], guarded[mask])
                for split in splits for mask in [np.array([pair.get("split", "all") == split for pair in pairs])]}
    print(f"{len(pairs)} pairs: {dict(kinds)}; model {embedder.name}, loaded in {load_s:.2f} s; "
          f"default threshold {default}")
    print(f"\n{'threshold':>9} | " + " | ".join(f"{name:^24}" for name in GUARDS))
    print(f"{'':>9} | " + " | ".join(f"{'hit %':>11} {'false %':>12}" for _ in GUARDS))
    for row_number, threshold in enumerate(THRESHOLDS):
        if row_number % 5 == 0 or threshold == default:
            cells = [by_guard[name][row_number] for name in GUARDS]
            mark = " <- default" if threshold == default else ""
            print(f"{threshold:>9.2f} | " + " | ".join(
                f"{100 * cell['hit_rate']:>11.1f} {100 * cell['false_hit_rate']:>12.1f}" for cell in cells) + mark)

    sizes = Counter(pair.get("split", "all") for pair in pairs)
    print("\nevery rule, by split (" + ", ".join(f"{split}: {sizes[split]} pairs" for split in splits) + ")")
    print(f"{'threshold':>9} | " + " | ".join(f"{split + ' hit %':>14} {'false %':>8}" for split in splits))
    for row_number, threshold in enumerate(THRESHOLDS):
        if row_number % 5 == 0 or threshold == default:
            mark = " <- default" if threshold == default else ""
            print(f"{threshold:>9.2f} | " + " | ".join(
                f"{100 * by_split[split][row_number]['hit_rate']:>14.1f} "
                f"{100 * by_split[split][row_number]['false_hit_rate']:>8.1f}" for split in splits) + mark)

    served_wrong = [{"kind": pair["kind"], "a": pair["a"], "b": pair["b"], "similarity": round(float(score), 4)}
                    for pair, score, why in zip(pairs, similarities, blocked_by["all (default)"])
                    if not pair["paraphrase"] and why is None and score >= default]
    rejected_by_rule = Counter(why for pair, why in zip(pairs, blocked_by["all (default)"]) if why is not None)
    guard_cost = Counter(why for pair, why in zip(pairs, blocked_by["all (default)"])
                         if pair["paraphrase"] and why is not None)
    print(f"\nat the default {default} with every rule, non-paraphrases still served ({len(served_wrong)}):")
    for wrong in served_wrong:
        print(f"  {wrong['similarity']:.3f} {wrong['kind']:<9} {wrong['a']!r} -> {wrong['b']!r}")
    print(f"pairs refused by the guard, by first failing rule: {dict(rejected_by_rule)}; "
          f"of them paraphrases: {dict(guard_cost)}")

    negatives = int((~paraphrase).sum())
    bound = upper_bound(len(served_wrong), negatives)
    print(f"false hits at the default: {len(served_wrong)} of {negatives} different requests; "
          f"95% upper bound of the rate: {100 * bound:.1f} %")

    index_run = through_index(embedder, pairs, default)
    print(f"\nthrough one SemanticIndex of all {len({p['a'] for p in pairs})} first prompts at {default}: "
          f"{index_run['outcomes']}")
    for wrong in index_run["wrong_answers"]:
        print(f"  wrong: {wrong['asked']!r} served the answer of {wrong['served_answer_of']!r} "
              f"({wrong['similarity']})")

    cost = costs(embedder, firsts + seconds, load_s)
    print("\ncosts: " + ", ".join(f"{name} {value:.4g}" for name, value in cost.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"pairs": len(pairs), "kinds": dict(kinds), "model": embedder.name, "default_threshold": default,
              "curves": by_guard, "curves_by_split_every_rule": by_split, "served_wrong_at_default": served_wrong,
              "false_hit_rate_upper_bound_95": bound,
              "refused_by_rule_at_default": dict(rejected_by_rule), "paraphrases_refused_by_rule": dict(guard_cost),
              "index": index_run, "costs": cost}
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(args.out.with_suffix(".png"), by_guard, default)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
