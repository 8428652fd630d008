"""Estimating the memory a model needs before loading it (pure arithmetic).

The estimate is deliberately simple and errs on the safe side::

    weights_bytes * WEIGHTS_OVERHEAD_FACTOR          ORT keeps the weights once (+5 %)
  + 2 * kv_cache_bytes(batch_size, context_tokens)   past and present caches alive together
  + logits_bytes(batch_size, PREFILL_CHUNK_TOKENS)   prefill runs in chunks of this many tokens
  + RUNTIME_OVERHEAD_BYTES                           Python, ONNX Runtime, tokenizer, arenas

Measured on TinyLlama-1.1B int8 (LOCAL_MODEL.md): 1.2 GiB peak resident
for a 1.1 GB weights file at batch 1 with a short prompt; the formula gives
about 1.5 GB for the full 2048-token context, within the 1.5 GiB default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelDims", "estimate_memory_bytes", "weights_bytes", "WEIGHTS_OVERHEAD_FACTOR",
           "RUNTIME_OVERHEAD_BYTES", "PREFILL_CHUNK_TOKENS"]

WEIGHTS_OVERHEAD_FACTOR = 1.05
RUNTIME_OVERHEAD_BYTES = 192 * 1024**2
PREFILL_CHUNK_TOKENS = 256


@dataclass(frozen=True, kw_only=True)
class ModelDims:
    """The dimensions of a decoder that decide its cache and logits sizes."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    cache_dtype_bytes: int = 4


def weights_bytes(model_file: Path) -> int:
    """Size of ``model_file`` plus its external data files (``model.onnx_data``, ``model.onnx.data``)."""
    total = model_file.stat().st_size
    for sibling in model_file.parent.iterdir():
        if sibling != model_file and sibling.name.startswith(model_file.name) and sibling.suffix != ".onnx":
            total += sibling.stat().st_size
    return total


def kv_cache_bytes(dims: ModelDims, *, batch_size: int, tokens: int) -> int:
    """Bytes of one key/value cache holding ``tokens`` positions for ``batch_size`` sequences."""
    return 2 * dims.layers * batch_size * dims.kv_heads * tokens * dims.head_dim * dims.cache_dtype_bytes


def estimate_memory_bytes(dims: ModelDims, *, weights: int, batch_size: int, context_tokens: int) -> int:
    """Peak resident bytes expected when running at ``batch_size`` up to ``context_tokens``."""
    kv = kv_cache_bytes(dims, batch_size=batch_size, tokens=context_tokens)
    logits = batch_size * min(PREFILL_CHUNK_TOKENS, context_tokens) * dims.vocab_size * 4
    return int(weights * WEIGHTS_OVERHEAD_FACTOR) + 2 * kv + logits + RUNTIME_OVERHEAD_BYTES
