"""Estimating the memory a model needs before loading it (pure arithmetic).

The estimate is deliberately simple and errs on the safe side::

    weights_bytes * WEIGHTS_OVERHEAD_FACTOR          ORT keeps the weights once (+5 %)
  + 2 * kv_cache_bytes(batch_size, context_tokens)   past and present caches alive together
  + logits_bytes(batch_size, PREFILL_CHUNK_TOKENS)   prefill runs in chunks of this many tokens
  + RUNTIME_OVERHEAD_BYTES                           Python, ONNX Runtime, tokenizer, arenas

Measured on TinyLlama-1.1B int8 (LOCAL_MODEL.md): 1.2 GiB peak resident
for a 1.1 GB weights file at batch 1 with a short prompt; the formula gives
about 1.5 GB for the full 2048-token context, within the 1.5 GiB default.

The same formula, split into a fixed part and a part per sequence and
position (:class:`MemoryBudget`), tells the batching policy how many
sequences of a given padded length fit under the limit: eight short prompts
may fit where eight full-context ones would not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelDims", "MemoryBudget", "estimate_memory_bytes", "weights_bytes", "WEIGHTS_OVERHEAD_FACTOR",
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


@dataclass(frozen=True, kw_only=True)
class MemoryBudget:
    """:func:`estimate_memory_bytes` split into what one more sequence adds, for batch sizing."""

    limit_bytes: int
    fixed_bytes: int  # weights and runtime, whatever the batch
    row_bytes_per_token: int  # past and present KV cache of one sequence, per position
    row_logits_bytes: int  # logits of one sequence's prefill chunk

    @classmethod
    def for_model(cls, dims: ModelDims, *, weights: int, limit_bytes: int) -> MemoryBudget:
        """The budget of a model with ``weights`` bytes of weights under ``limit_bytes``."""
        return cls(limit_bytes=limit_bytes,
                   fixed_bytes=int(weights * WEIGHTS_OVERHEAD_FACTOR) + RUNTIME_OVERHEAD_BYTES,
                   row_bytes_per_token=2 * kv_cache_bytes(dims, batch_size=1, tokens=1),
                   row_logits_bytes=PREFILL_CHUNK_TOKENS * dims.vocab_size * 4)

    def batch_bytes(self, rows: int, width_tokens: int) -> int:
        """Estimated peak bytes of ``rows`` sequences padded to ``width_tokens`` positions."""
        per_row = self.row_bytes_per_token * width_tokens + self.row_logits_bytes
        return self.fixed_bytes + rows * per_row

    def fits(self, rows: int, width_tokens: int) -> bool:
        """Whether such a batch stays within the limit."""
        return self.batch_bytes(rows, width_tokens) <= self.limit_bytes
