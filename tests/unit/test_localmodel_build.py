"""Tests of the tiny model builder: the Optimum export's I/O and a consistent KV cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import LocalModel


def test_model_has_the_optimum_text_generation_with_past_io(tiny_model_dir: Path) -> None:
    """Inputs and outputs have the names, dtypes and shapes of Optimum's TinyLlama export."""
    session = ort.InferenceSession(str(tiny_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    outputs = {o.name: (o.type, o.shape) for o in session.get_outputs()}
    assert inputs["input_ids"] == ("tensor(int64)", ["batch_size", "sequence_length"])
    assert inputs["attention_mask"] == ("tensor(int64)", ["batch_size", "total_sequence_length"])
    assert inputs["position_ids"] == ("tensor(int64)", ["batch_size", "sequence_length"])
    assert inputs["past_key_values.1.value"] == ("tensor(float)", ["batch_size", 2, "past_sequence_length", 16])
    assert outputs["logits"] == ("tensor(float)", ["batch_size", "sequence_length", 512])
    assert outputs["present.1.key"] == ("tensor(float)", ["batch_size", 2, "total_sequence_length", 16])
    assert len(inputs) == 3 + 2 * 2 and len(outputs) == 1 + 2 * 2


def test_config_and_tokenizer_are_llama_like(tiny_model_dir: Path) -> None:
    """config.json has the HF llama keys and the tokenizer has <unk>, <s>, </s> at 0, 1, 2 and adds <s>."""
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]) == (4, 2, 512)
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    assert [tokenizer.token_to_id(t) for t in ("<unk>", "<s>", "</s>")] == [0, 1, 2]
    assert tokenizer.get_vocab_size() == 512
    assert tokenizer.encode("hello").ids[0] == 1


def test_full_sequence_logits_equal_prefill_plus_step_by_step_decode(tiny_model_dir: Path) -> None:
    """Logits of one full-sequence call equal a 4-token prefill then one-token steps with the KV cache (fp32)."""
    model = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none"))
    ids = np.array([model.encode("the router streams tokens to kafka and back again")], dtype=np.int64)
    length = ids.shape[1]
    full, _ = model.forward(ids, np.ones_like(ids), np.arange(length)[None], model.empty_past(1))
    logits, past = model.forward(ids[:, :4], np.ones((1, 4), np.int64), np.arange(4)[None], model.empty_past(1))
    pieces = [logits]
    for t in range(4, length):
        logits, past = model.forward(ids[:, t : t + 1], np.ones((1, t + 1), np.int64), np.array([[t]]), past)
        pieces.append(logits)
    assert np.abs(np.concatenate(pieces, axis=1) - full).max() < 1e-5
    assert past[0].shape == (1, 2, length, 16)


def test_logits_are_not_degenerate(tiny_model_dir: Path) -> None:
    """The random weights give logits with a clear spread, so greedy and sampling differ meaningfully."""
    model = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none"))
    ids = np.array([model.encode("hello world")], dtype=np.int64)
    logits, _ = model.forward(ids, np.ones_like(ids), np.arange(ids.shape[1])[None], model.empty_past(1))
    assert 0.5 < float(logits.std()) < 10.0
