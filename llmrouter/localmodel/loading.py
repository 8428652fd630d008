"""Finding, checking and describing the files of a local model directory.

A model directory holds what ``optimum-cli export onnx --task
text-generation-with-past`` writes: ``model.onnx`` (plus ``model.onnx_data``
for large fp32 models), ``config.json`` and ``tokenizer.json``; after
``llmrouter model quantize`` also ``quantization.json``.

Which weights file is loaded (the rule):

* ``quantization="int8"``: the first of ``model.int8.onnx``,
  ``model_int8.onnx``, ``model_quantized.onnx`` (Optimum's name) that
  exists; otherwise ``model.onnx``, which should then be a directory written
  by ``llmrouter model quantize`` (a warning is logged if it is not marked so).
* ``quantization="none"``: always ``model.onnx``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from llmrouter.errors import ModelLoadError
from llmrouter.localmodel.memory import ModelDims
from llmrouter.localmodel.quantize import MARKER_FILE

__all__ = ["ModelFiles", "HFConfig", "find_model_files", "read_hf_config", "usable_cores", "clamp_threads"]

log = logging.getLogger(__name__)

INT8_NAMES = ("model.int8.onnx", "model_int8.onnx", "model_quantized.onnx")


@dataclass(frozen=True, kw_only=True)
class ModelFiles:
    """The files the engine loads from a model directory."""

    model: Path
    config: Path
    tokenizer: Path
    quantized: bool


@dataclass(frozen=True, kw_only=True)
class HFConfig:
    """What the engine needs from a Hugging Face ``config.json``."""

    dims: ModelDims
    max_positions: int
    bos_token_id: int | None
    eos_token_ids: frozenset[int]


def find_model_files(model_path: Path, quantization: str) -> ModelFiles:
    """Pick the weights file by the rule above; ``ModelLoadError`` names what is missing."""
    if not model_path.is_dir():
        raise ModelLoadError(f"The model directory {model_path} does not exist; export or build a model there first.")
    model = model_path / "model.onnx"
    quantized = (model_path / MARKER_FILE).is_file()
    if quantization == "int8":
        for name in INT8_NAMES:
            if (model_path / name).is_file():
                model, quantized = model_path / name, True
                break
        else:
            if model.is_file() and not quantized:
                log.warning(
                    "quantization is int8 but %s is not marked as quantized; loading it as it is. "
                    "Run `llmrouter model quantize %s %s-int8` and point model_path there.",
                    model, model_path, model_path,
                )
    missing = [p.name for p in (model, model_path / "config.json", model_path / "tokenizer.json") if not p.is_file()]
    if missing:
        raise ModelLoadError(f"The model directory {model_path} lacks {', '.join(missing)}.")
    return ModelFiles(model=model, config=model_path / "config.json", tokenizer=model_path / "tokenizer.json",
                      quantized=quantized)


def read_hf_config(path: Path) -> HFConfig:
    """Read layers, heads, vocabulary, positions and special tokens from ``config.json``."""
    try:
        raw = json.loads(path.read_text())
        heads = int(raw["num_attention_heads"])
        eos = raw.get("eos_token_id", 2)
        dims = ModelDims(
            layers=int(raw["num_hidden_layers"]),
            kv_heads=int(raw.get("num_key_value_heads", heads)),
            head_dim=int(raw.get("head_dim") or int(raw["hidden_size"]) // heads),
            vocab_size=int(raw["vocab_size"]),
        )
        return HFConfig(
            dims=dims,
            max_positions=int(raw.get("max_position_embeddings", 2048)),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_ids=frozenset(eos if isinstance(eos, list) else [eos]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path} is not a usable Hugging Face config.json: {exc}") from exc


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def clamp_threads(requested: int, available: int, *, allow_oversubscribe: bool = False) -> int:
    """Threads to use: ``requested``, but never more than ``available`` cores.

    More ONNX Runtime threads than cores made decoding three times slower on
    the reference machine (LOCAL_MODEL.md), so the clamp is on unless a
    benchmark explicitly asks to oversubscribe.
    """
    if allow_oversubscribe or requested <= available:
        return requested
    log.warning(
        "inference_threads=%d is more than the %d cores this process may use; using %d threads "
        "(oversubscribed ONNX Runtime threads decode about 3x slower).",
        requested, available, available,
    )
    return available
