"""Build a tiny random-weight Llama decoder with the Optimum export's exact I/O.

The model is built with the ``onnx`` package alone (no torch) and has the
inputs and outputs of ``optimum-cli export onnx --task
text-generation-with-past`` for TinyLlama::

    input_ids                  int64   [batch, seq]
    attention_mask             int64   [batch, past + seq]
    position_ids               int64   [batch, seq]
    past_key_values.{i}.key    float32 [batch, kv_heads, past, head_dim]
    past_key_values.{i}.value  float32 [batch, kv_heads, past, head_dim]
    -> logits                  float32 [batch, seq, vocab]
    -> present.{i}.key / present.{i}.value  [batch, kv_heads, past + seq, head_dim]

and the real architecture: token embedding, RMSNorm, rotary position
embedding from ``position_ids``, grouped-query attention with a causal mask
combined with the padding mask, SiLU-gated MLP, final RMSNorm, lm_head.
Every weight is a MatMul/Gather initializer, so ONNX Runtime dynamic int8
quantization applies to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llmrouter.localmodel.tiny_tokenizer import build_tiny_tokenizer

__all__ = ["build_tiny_model", "TinyShape"]

OPSET = 17
RMS_NORM_EPS = 1e-5
ROPE_THETA = 10000.0
MASK_VALUE = -1e9  # finite, so a fully masked (padding) row gives no NaN


@dataclass(frozen=True, kw_only=True)
class TinyShape:
    """The dimensions of a tiny Llama model."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab_size: int
    max_positions: int

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads}).")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads}).")
        if (self.hidden // self.heads) % 2:
            raise ValueError("The head dimension (hidden / heads) must be even for rotary embedding.")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads


class _Graph:
    """Collects nodes and initializers; each op call returns its output name."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, op: str) -> str:
        self._count += 1
        return f"{op.lower()}_{self._count}"

    def const(self, name: str, value: np.ndarray) -> str:
        """Add an initializer and return its name."""
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], std: float) -> str:
        """Add a random float32 weight with the given standard deviation."""
        return self.const(name, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attrs: object) -> str:
        """Add one node with a single output."""
        out = output or self._name(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def i64(self, name: str, values: list[int]) -> str:
        """Add an int64 1-D constant."""
        return self.const(name, np.array(values, dtype=np.int64))


def _rms_norm(g: _Graph, x: str, prefix: str, hidden: int) -> str:
    """x / sqrt(mean(x^2) + eps) * weight over the last axis."""
    weight = g.const(f"{prefix}.weight", np.ones(hidden, dtype=np.float32))
    mean_sq = g.op("ReduceMean", g.op("Mul", x, x), axes=[-1], keepdims=1)
    denom = g.op("Sqrt", g.op("Add", mean_sq, "rms_eps"))
    return g.op("Mul", g.op("Div", x, denom), weight)


def _rotate(g: _Graph, x: str, cos: str, sin: str) -> str:
    """x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) on the last axis."""
    first = g.op("Slice", x, "zero_1d", "half_dim", "last_axis")
    second = g.op("Slice", x, "half_dim", "int_max", "last_axis")
    rotated = g.op("Concat", g.op("Neg", second), first, axis=-1)
    return g.op("Add", g.op("Mul", x, cos), g.op("Mul", rotated, sin))


def _attention(g: _Graph, x: str, i: int, s: TinyShape) -> str:
    """Grouped-query self-attention of layer ``i`` with rotary positions and the KV cache."""
    p = f"model.layers.{i}.self_attn"
    std = s.hidden**-0.5
    q = g.op("MatMul", x, g.weight(f"{p}.q_proj.weight", (s.hidden, s.heads * s.head_dim), std))
    k = g.op("MatMul", x, g.weight(f"{p}.k_proj.weight", (s.hidden, s.kv_heads * s.head_dim), std))
    v = g.op("MatMul", x, g.weight(f"{p}.v_proj.weight", (s.hidden, s.kv_heads * s.head_dim), std))
    # Head h uses KV head h // n_rep, as in HF repeat_kv: q is [B, KV, n_rep, S, D].
    q = g.op("Transpose", g.op("Reshape", q, "q_shape"), perm=[0, 2, 3, 1, 4])
    k = g.op("Transpose", g.op("Reshape", k, "kv_shape"), perm=[0, 2, 1, 3])
    v = g.op("Transpose", g.op("Reshape", v, "kv_shape"), perm=[0, 2, 1, 3])
    q = _rotate(g, q, "cos_q", "sin_q")
    k = _rotate(g, k, "cos_k", "sin_k")
    k_all = g.op("Concat", f"past_key_values.{i}.key", k, axis=2, output=f"present.{i}.key")
    v_all = g.op("Concat", f"past_key_values.{i}.value", v, axis=2, output=f"present.{i}.value")
    k_t = g.op("Transpose", g.op("Unsqueeze", k_all, "axis_2"), perm=[0, 1, 2, 4, 3])
    scores = g.op("Mul", g.op("MatMul", q, k_t), "attn_scale")
    probs = g.op("Softmax", g.op("Add", scores, "attn_bias"), axis=-1)
    ctx = g.op("MatMul", probs, g.op("Unsqueeze", v_all, "axis_2"))
    ctx = g.op("Reshape", g.op("Transpose", ctx, perm=[0, 3, 1, 2, 4]), "merge_heads_shape")
    return g.op("MatMul", ctx, g.weight(f"{p}.o_proj.weight", (s.heads * s.head_dim, s.hidden), std))


def _mlp(g: _Graph, x: str, i: int, s: TinyShape) -> str:
    """down(silu(gate(x)) * up(x)) of layer ``i``."""
    p = f"model.layers.{i}.mlp"
    gate = g.op("MatMul", x, g.weight(f"{p}.gate_proj.weight", (s.hidden, s.intermediate), s.hidden**-0.5))
    up = g.op("MatMul", x, g.weight(f"{p}.up_proj.weight", (s.hidden, s.intermediate), s.hidden**-0.5))
    act = g.op("Mul", g.op("Mul", gate, g.op("Sigmoid", gate)), up)
    down = g.weight(f"{p}.down_proj.weight", (s.intermediate, s.hidden), s.intermediate**-0.5)
    return g.op("MatMul", act, down)


def _positions_and_mask(g: _Graph, s: TinyShape) -> None:
    """Rotary cos/sin from position_ids and the additive causal+padding bias ``attn_bias``."""
    inv_freq = 1.0 / ROPE_THETA ** (np.arange(0, s.head_dim, 2, dtype=np.float32) / s.head_dim)
    g.const("inv_freq", inv_freq.astype(np.float32))
    pos = g.op("Unsqueeze", g.op("Cast", "position_ids", to=TensorProto.FLOAT), "axis_last")
    freqs = g.op("Mul", pos, "inv_freq")  # [B, S, D/2]
    emb = g.op("Concat", freqs, freqs, axis=-1)  # [B, S, D]
    cos, sin = g.op("Cos", emb), g.op("Sin", emb)
    g.op("Unsqueeze", cos, "axis_1", output="cos_k")  # [B, 1, S, D]
    g.op("Unsqueeze", sin, "axis_1", output="sin_k")
    g.op("Unsqueeze", cos, "axes_1_2", output="cos_q")  # [B, 1, 1, S, D]
    g.op("Unsqueeze", sin, "axes_1_2", output="sin_q")
    # Query i sits at absolute index (total - seq + i); it may see key j <= that index.
    seq = g.op("Gather", g.op("Shape", "input_ids"), "one_scalar", axis=0)
    total = g.op("Gather", g.op("Shape", "attention_mask"), "one_scalar", axis=0)
    key_idx = g.op("Range", "zero_scalar", total, "one_scalar")  # [T]
    query_idx = g.op("Add", g.op("Range", "zero_scalar", seq, "one_scalar"), g.op("Sub", total, seq))
    causal = g.op("LessOrEqual", key_idx, g.op("Unsqueeze", query_idx, "axis_last"))  # [S, T]
    padding = g.op("Cast", "attention_mask", to=TensorProto.BOOL)
    padding = g.op("Unsqueeze", padding, "axes_1_2_3")  # [B, 1, 1, 1, T]
    allowed = g.op("And", causal, padding)  # [B, 1, 1, S, T]
    g.op("Where", allowed, "zero_f", "mask_value", output="attn_bias")


def _shared_constants(g: _Graph, s: TinyShape) -> None:
    """Scalars, axes and reshape targets the layers share."""
    g.const("rms_eps", np.array(RMS_NORM_EPS, dtype=np.float32))
    g.const("attn_scale", np.array(s.head_dim**-0.5, dtype=np.float32))
    g.const("zero_f", np.array(0.0, dtype=np.float32))
    g.const("mask_value", np.array(MASK_VALUE, dtype=np.float32))
    g.const("zero_scalar", np.array(0, dtype=np.int64))
    g.const("one_scalar", np.array(1, dtype=np.int64))
    g.i64("zero_1d", [0])
    g.i64("half_dim", [s.head_dim // 2])
    g.i64("int_max", [np.iinfo(np.int64).max])
    g.i64("last_axis", [-1])
    g.i64("axis_1", [1])
    g.i64("axis_2", [2])
    g.i64("axis_last", [-1])
    g.i64("axes_1_2", [1, 2])
    g.i64("axes_1_2_3", [1, 2, 3])
    g.i64("q_shape", [0, 0, s.kv_heads, s.heads // s.kv_heads, s.head_dim])
    g.i64("kv_shape", [0, 0, s.kv_heads, s.head_dim])
    g.i64("merge_heads_shape", [0, 0, s.heads * s.head_dim])


def _io(s: TinyShape) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """Graph inputs and outputs, named and shaped like the Optimum export."""
    kv_in = ["batch_size", s.kv_heads, "past_sequence_length", s.head_dim]
    kv_out = ["batch_size", s.kv_heads, "total_sequence_length", s.head_dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", s.vocab_size])
    ]
    for i in range(s.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, kv_in))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT, kv_out))
    return inputs, outputs


def build_graph(shape: TinyShape, *, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model of a random-weight Llama decoder of ``shape``."""
    g = _Graph(np.random.default_rng(seed))
    _shared_constants(g, shape)
    _positions_and_mask(g, shape)
    x = g.op("Gather", g.weight("model.embed_tokens.weight", (shape.vocab_size, shape.hidden), 1.0), "input_ids")
    for i in range(shape.layers):
        normed = _rms_norm(g, x, f"model.layers.{i}.input_layernorm", shape.hidden)
        x = g.op("Add", x, _attention(g, normed, i, shape))
        normed = _rms_norm(g, x, f"model.layers.{i}.post_attention_layernorm", shape.hidden)
        x = g.op("Add", x, _mlp(g, normed, i, shape))
    x = _rms_norm(g, x, "model.norm", shape.hidden)
    # std 2/sqrt(hidden) on unit-RMS input gives logits of std about 2: peaked, not degenerate.
    lm_head = g.weight("lm_head.weight", (shape.hidden, shape.vocab_size), 2.0 * shape.hidden**-0.5)
    g.op("MatMul", x, lm_head, output="logits")
    inputs, outputs = _io(shape)
    graph = helper.make_graph(g.nodes, "tiny_llama", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="llmrouter")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _hf_config(s: TinyShape) -> dict[str, object]:
    """A Hugging Face style config.json for ``s``."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "num_hidden_layers": s.layers,
        "hidden_size": s.hidden,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "intermediate_size": s.intermediate,
        "vocab_size": s.vocab_size,
        "max_position_embeddings": s.max_positions,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_theta": ROPE_THETA,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def build_tiny_model(
    out_dir: Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab_size: int = 512,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """Write ``model.onnx``, ``config.json`` and ``tokenizer.json`` of a tiny Llama to ``out_dir``.

    Returns ``out_dir``. The same arguments always give the same files.
    """
    shape = TinyShape(
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        intermediate=intermediate,
        vocab_size=vocab_size,
        max_positions=max_positions,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(shape, seed=seed), out_dir / "model.onnx")
    (out_dir / "config.json").write_text(json.dumps(_hf_config(shape), indent=2) + "\n")
    build_tiny_tokenizer(vocab_size, seed=seed).save(str(out_dir / "tokenizer.json"))
    return out_dir
