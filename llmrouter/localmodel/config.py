"""Configuration of the local ONNX model (specification F005, local provider).

:class:`LocalModelConfig` is an immutable, validated value object; every
field names its unit. :func:`parse_size` turns human sizes such as
``"1.5GB"`` from the settings file into bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LocalModelConfig", "parse_size", "QUANTIZATIONS", "BATCHING_MODES"]

QUANTIZATIONS = ("int8", "none")
BATCHING_MODES = ("latency", "balanced", "throughput")

_SIZE_UNITS = {
    "b": 1,
    "kb": 1024,
    "mb": 1024**2,
    "gb": 1024**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Parse a memory size such as ``"1.5GB"``, ``"512 MiB"`` or ``"1024"`` into bytes.

    Units are case-insensitive: B, KB, MB, GB, KiB, MiB, GiB. KB/MB/GB are
    read as binary (1024-based) units, the same as KiB/MiB/GiB, because that
    is what people mean when they write a memory limit such as
    ``max_memory: 1.5GB`` (1.5 GB = 1 610 612 736 bytes, the default limit).
    A bare number is bytes. Fractions are rounded down to whole bytes.

    Raises ``ValueError`` with a sentence naming the accepted units when the
    text is not a size.
    """
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"A memory size must be positive, got {text}.")
        return text
    match = _SIZE_PATTERN.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _SIZE_UNITS):
        raise ValueError(
            f"{text!r} is not a memory size; write a number with one of the units "
            "B, KB, MB, GB, KiB, MiB, GiB (for example '1.5GB')."
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[unit or "b"])
    if size <= 0:
        raise ValueError(f"A memory size must be positive, got {text!r}.")
    return size


@dataclass(frozen=True, kw_only=True)
class LocalModelConfig:
    """How to load and run the local model.

    Fields:
        model_path: directory holding ``model.onnx`` (or ``model.int8.onnx``),
            ``config.json`` and ``tokenizer.json``.
        max_memory_bytes: the engine refuses to load a model whose estimated
            memory for one full-context sequence exceeds this (default
            1.5 GiB); batches of long sequences run fewer rows to stay within it.
        inference_threads: ONNX Runtime intra-op threads; clamped at load time
            to the cores this process may use.
        quantization: ``"int8"`` prefers ``model.int8.onnx`` when present;
            ``"none"`` always loads ``model.onnx``.
        batch_size: most sequences decoded together in one pass.
        batching: ``"latency"`` (never wait for a batch to fill),
            ``"balanced"`` (wait briefly, only when requests arrive fast
            enough) or ``"throughput"`` (wait up to the max wait for a full
            batch); see :mod:`llmrouter.localmodel.batching`.
        max_batch_wait_s: longest wait for a batch to fill; None for the
            mode's default (0, 0.05, 0.2 s).
        max_queue: requests waiting for the model at most; the next one is
            refused (code ``overloaded``) and goes on to the next provider.
        max_concurrent: worker threads running inference (each one a batch).
        timeout_s: longest a generation may take, queueing included.
        context_tokens: prompt plus completion may not exceed this.
    """

    model_path: Path
    max_memory_bytes: int = 1_610_612_736
    inference_threads: int = 4
    quantization: str = "int8"
    batch_size: int = 1
    batching: str = "balanced"
    max_batch_wait_s: float | None = None
    max_queue: int = 32
    max_concurrent: int = 1
    timeout_s: float = 10.0
    context_tokens: int = 2048

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", Path(self.model_path))
        if self.max_memory_bytes <= 0:
            raise ValueError(f"max_memory_bytes must be positive, got {self.max_memory_bytes}.")
        if self.inference_threads < 1:
            raise ValueError(f"inference_threads must be at least 1, got {self.inference_threads}.")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {self.quantization!r}."
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.batching not in BATCHING_MODES:
            raise ValueError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {self.batching!r}.")
        if self.max_batch_wait_s is not None and self.max_batch_wait_s < 0:
            raise ValueError(f"max_batch_wait_s must not be negative, got {self.max_batch_wait_s}.")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be 0 or more, got {self.max_queue}.")
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {self.max_concurrent}.")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be a positive number of seconds, got {self.timeout_s}.")
        if self.context_tokens < 2:
            raise ValueError(f"context_tokens must be at least 2, got {self.context_tokens}.")
