"""Choosing the next token from logits: greedy, temperature and top-p (pure numpy)."""

from __future__ import annotations

import numpy as np

__all__ = ["pick_token"]


def pick_token(logits: np.ndarray, *, temperature: float, top_p: float, rng: np.random.Generator | None) -> int:
    """Return the next token id for one row of logits.

    ``temperature == 0`` is greedy (argmax, the first one on ties). Otherwise
    the logits are divided by ``temperature`` and, when ``top_p < 1``, only the
    smallest set of most likely tokens whose probabilities add up to at
    least ``top_p`` is kept (nucleus sampling); one token is drawn with
    ``rng`` (required then), so the same seed gives the same tokens.
    """
    if temperature <= 0.0:
        return int(logits.argmax())
    if rng is None:
        raise ValueError("Sampling with a temperature above 0 needs a random generator.")
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
        kept = probs[keep] / probs[keep].sum()
        return int(keep[min(int(np.searchsorted(np.cumsum(kept), rng.random(), side="right")), len(keep) - 1)])
    cumulative = np.cumsum(probs)
    return int(min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(probs) - 1))
