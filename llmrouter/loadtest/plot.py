"""``--plot PATH.png``: the latency of each path as a histogram and as a CDF, the echo baseline beside them.

matplotlib is an optional dependency (the ``bench`` extra, also in ``test``):
the load test itself runs without it, and ``--plot`` says what to install.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from llmrouter.errors import ConfigError


def require_matplotlib() -> None:
    """Fail before a run, not after it, when ``--plot`` cannot be honoured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError('--plot needs matplotlib: pip install "llm-router[bench]"') from None


def plot_latency(runs: dict[str, dict[str, np.ndarray]], title: str, path: Path) -> Path:
    """``runs``: run label -> path -> latencies in ms. Left a histogram on log-spaced bins, right the CDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(f"{label} {name}" if name != label else label, values)
              for label, paths in runs.items() for name, values in paths.items() if len(values)]
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    if series:
        low = max(min(float(v.min()) for _, v in series), 0.01)
        high = max(float(v.max()) for _, v in series)
        bins = np.geomspace(low, max(high, low * 1.01), 60)
        for name, values in series:
            hist.hist(values, bins=bins, histtype="step", linewidth=1.4, label=f"{name} (n={len(values)})")
            ordered = np.sort(values)
            cdf.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), linewidth=1.4,
                     label=f"{name} p50 {np.percentile(values, 50):.1f} / p99 {np.percentile(values, 99):.1f} ms")
    for ax, ylabel in ((hist, "requests"), (cdf, "share of requests answered")):
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log scale)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for q in (0.5, 0.95, 0.99):
        cdf.axhline(q, color="grey", linewidth=0.6, linestyle=":")
    hist.set_title("latency per path")
    cdf.set_title("latency CDF per path")
    fig.suptitle(textwrap.fill(title, 140), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
