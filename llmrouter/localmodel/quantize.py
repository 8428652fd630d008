"""Offline dynamic int8 quantization of an exported model directory.

Quantizing TinyLlama-1.1B takes about a minute and 13 GB of RAM on the
reference machine (see LOCAL_MODEL.md): a one-off step run by
``llmrouter model quantize SRC DST``, never at worker start.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

__all__ = ["quantize_model", "QUANTIZED_OPS", "MARKER_FILE"]

# MatMul weights become int8; the embedding table (Gather) is quantized too,
# which keeps the fp32 table from growing resident as its rows are read.
QUANTIZED_OPS = ("MatMul", "Gather")
MARKER_FILE = "quantization.json"
_COPIED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "generation_config.json")


def quantize_model(
    src_dir: Path,
    dst_dir: Path,
    *,
    progress: Callable[[str], None] = print,
) -> Path:
    """Quantize ``src_dir/model.onnx`` to int8 into ``dst_dir/model.onnx``.

    Weights of MatMul (with a constant B) and Gather are stored as 8-bit
    integers; activations are quantized per call (dynamic quantization).
    ``config.json``, ``tokenizer.json`` and the other tokenizer files present
    are copied, and ``quantization.json`` records how the model was made.
    ``progress`` gets one line before and one after, with elapsed seconds.
    Returns the path of the quantized model file.

    Raises ``FileNotFoundError`` when ``src_dir`` has no ``model.onnx``.
    """
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    source = src_dir / "model.onnx"
    if not source.is_file():
        raise FileNotFoundError(f"No model.onnx in {src_dir}; export the model first (see README).")
    dst_dir.mkdir(parents=True, exist_ok=True)
    target = dst_dir / "model.onnx"
    size_mb = sum(p.stat().st_size for p in src_dir.glob("model.onnx*")) / 1e6
    progress(f"quantizing {source} ({size_mb:.1f} MB) to int8; large models take a minute or more")
    started = time.monotonic()
    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=list(QUANTIZED_OPS),
        weight_type=QuantType.QInt8,
        per_channel=False,
        extra_options={"MatMulConstBOnly": True},
        use_external_data_format=size_mb > 1800,
    )
    elapsed = time.monotonic() - started
    for name in _COPIED_FILES:
        if (src_dir / name).is_file():
            shutil.copy2(src_dir / name, dst_dir / name)
    marker = {"weights": "int8", "method": "onnxruntime.quantize_dynamic", "ops": list(QUANTIZED_OPS)}
    (dst_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    out_mb = sum(p.stat().st_size for p in dst_dir.glob("model.onnx*")) / 1e6
    progress(f"quantized in {elapsed:.1f} s: {target} ({out_mb:.1f} MB)")
    return target
