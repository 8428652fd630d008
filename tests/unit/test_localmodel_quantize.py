"""Tests of int8 quantization and loading the quantized model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationRequest, LocalModel


def test_quantized_dir_has_int8_weights_and_the_tokenizer(tiny_model_dir: Path, tiny_int8_dir: Path) -> None:
    """The quantized model uses MatMulInteger and a quantized embedding, is smaller, and has config + tokenizer."""
    ops = {node.op_type for node in onnx.load(tiny_int8_dir / "model.onnx").graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear"} <= ops
    assert (tiny_int8_dir / "model.onnx").stat().st_size < (tiny_model_dir / "model.onnx").stat().st_size / 2
    assert (tiny_int8_dir / "tokenizer.json").is_file() and (tiny_int8_dir / "config.json").is_file()


def test_quantized_model_generates_and_its_logits_are_close_to_fp32(tiny_model_dir: Path, tiny_int8_dir: Path) -> None:
    """The int8 model loads (marked as quantized), generates tokens, and its logits are within 0.1 of fp32 on average."""
    fp32 = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none"))
    int8 = LocalModel(LocalModelConfig(model_path=tiny_int8_dir, quantization="int8"))
    assert int8.quantized and not fp32.quantized
    result = int8.generate(GenerationRequest(prompt="hello world", max_tokens=8))
    assert result.completion_tokens == 8
    ids = np.array([fp32.encode("the router streams tokens to kafka")], dtype=np.int64)
    mask, positions = np.ones_like(ids), np.arange(ids.shape[1])[None]
    expected, _ = fp32.forward(ids, mask, positions, fp32.empty_past(1))
    actual, _ = int8.forward(ids, mask, positions, int8.empty_past(1))
    assert np.abs(actual - expected).mean() < 0.1
    assert np.abs(actual - expected).max() < 0.5
