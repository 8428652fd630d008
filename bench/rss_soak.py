"""Benchmark: the worker's memory over a long run of cache hits (at least one million by default).

Runs ``bench/hot_path.py`` for one rate (every request a repeat from a pool of 16 prompts, so after the first
few every request is a cache hit answered at intake; no echo baseline) for ``--count`` requests, then reads
the worker's RSS samples (one a second, from the load test's ``--worker-pid``) and says whether it stayed
flat: the growth from the end of the warm-up (``--settle-share`` of the run, when L1, the recent answers
and the popular-key table have filled up) to the end, and the largest sample against the settled one.
Writes ``bench/results/rss_soak.json`` and ``bench/results/rss_soak-rss.png``.

Usage::

    .venv/bin/python bench/rss_soak.py                          # 1,000,000 requests at 600 req/s (~28 min)
    .venv/bin/python bench/rss_soak.py --count 200000 --rate 500

Needs Kafka and Redis (``.venv/bin/llmrouter infra up``). Exits 1 if anything was lost, duplicated or
failed, or if RSS grew more than ``--max-growth-pct`` after settling.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import hot_path

RESULTS = Path(__file__).parent / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=600.0)
    parser.add_argument("--settle-share", type=float, default=0.1, help="share of the run before RSS counts")
    parser.add_argument("--max-growth-pct", type=float, default=5.0)
    return parser.parse_args()


def flatness(samples: list[list[float]], settle_share: float) -> dict[str, float]:
    """RSS (MiB) at the start, once settled, at the end and at most, and the growth after settling in %."""
    end_s = samples[-1][0]
    settled = next(mib for t, mib in samples if t >= settle_share * end_s)
    after = [mib for t, mib in samples if t >= settle_share * end_s]
    return {"start_mib": samples[0][1], "settled_mib": settled, "end_mib": samples[-1][1], "max_mib": max(after),
            "growth_after_settling_pct": (samples[-1][1] - settled) / settled * 100.0,
            "max_over_settled_pct": (max(after) - settled) / settled * 100.0, "seconds": end_s}


def plot(samples: list[list[float]], figures: dict[str, float], answered: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot([t for t, _ in samples], [mib for _, mib in samples], lw=1)
    ax.axhline(figures["settled_mib"], color="grey", ls="--", lw=0.8, label=f"settled {figures['settled_mib']:.1f} MiB")
    ax.set_xlabel("seconds into the load")
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"worker RSS over {answered:,} cache hits: {figures['growth_after_settling_pct']:+.1f} % after settling")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    args = parse_args()
    out = RESULTS / "rss_soak.json"
    duration = args.count / args.rate
    code = hot_path.main(["--rates", f"{args.rate:g}", "--duration", f"{duration:g}", "--no-baseline", "--out", str(out),
                          "--worker-set", "worker.intake_concurrency=256", "--", "--count", str(args.count),
                          "--repeat-share", "1", "--pool-size", "16"])
    report = json.loads(out.with_name(f"rss_soak-{args.rate:g}.json").read_text())
    worker = report["workers"][0]
    router = report["router"]
    figures = flatness(worker["rss_samples"], args.settle_share)
    plot(worker["rss_samples"], figures, router["answered"], RESULTS / "rss_soak-rss.png")
    paths = ", ".join(f"{path} {stats['count']:,}" for path, stats in router["by_path"].items())
    print(f"\n{router['answered']:,} answered of {router['sent']:,} ({paths}), lost {router['lost']}, "
          f"duplicates {router['duplicates']}")
    print(f"worker RSS: start {figures['start_mib']:.1f} MiB, settled {figures['settled_mib']:.1f} MiB (after "
          f"{args.settle_share:.0%} of the run), end {figures['end_mib']:.1f} MiB, max {figures['max_mib']:.1f} MiB: "
          f"{figures['growth_after_settling_pct']:+.2f} % after settling, max {figures['max_over_settled_pct']:+.2f} %")
    summary = json.loads(out.read_text())
    summary["rss"] = figures
    out.write_text(json.dumps(summary, indent=2) + "\n")
    grew = figures["growth_after_settling_pct"] > args.max_growth_pct
    if grew:
        print(f"FAILED: RSS grew more than {args.max_growth_pct:g} % after settling")
    return 1 if code or grew else 0


if __name__ == "__main__":
    sys.exit(main())
