"""Tests of LocalModel generation on the real tiny ONNX model."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import pytest

from llmrouter.errors import ContextTooLong, ModelLoadError
from llmrouter.localmodel import engine as engine_module
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationCancelled, GenerationRequest, LocalModel
from llmrouter.localmodel.loading import clamp_threads, usable_cores

PROMPT = "The router reads a request from kafka and"


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> LocalModel:
    """The fp32 tiny model with a 512-token context."""
    return LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", context_tokens=512))


def test_greedy_generation_is_deterministic(model: LocalModel) -> None:
    """Greedy decoding of the same prompt gives the same tokens every time."""
    request = GenerationRequest(prompt=PROMPT, max_tokens=24)
    first, second = model.generate(request), model.generate(request)
    assert first.token_ids == second.token_ids
    assert first.completion_tokens == 24 and first.finish_reason == "length"
    assert first.prompt_tokens == model.count_tokens(PROMPT)


def test_sampling_repeats_with_a_seed_and_differs_across_seeds(model: LocalModel) -> None:
    """Temperature sampling with the same seed repeats; another seed gives other tokens."""
    def sample(seed: int) -> tuple[int, ...]:
        return model.generate(GenerationRequest(prompt=PROMPT, max_tokens=16, temperature=1.0, seed=seed)).token_ids

    assert sample(11) == sample(11)
    assert sample(11) != sample(12)


def test_batched_greedy_equals_unbatched_greedy(model: LocalModel) -> None:
    """Left-padded batch decoding gives each prompt exactly its unbatched greedy tokens and stop reason."""
    requests = [
        GenerationRequest(prompt=PROMPT, max_tokens=20),
        GenerationRequest(prompt="Hi", max_tokens=5),
        GenerationRequest(prompt="A much longer prompt about streams, tables and agents in the router", max_tokens=12),
        GenerationRequest(prompt="", max_tokens=9),
    ]
    batched = model.generate_batch(requests)
    alone = [model.generate(r) for r in requests]
    assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
    assert [r.completion_tokens for r in batched] == [20, 5, 12, 9]


def test_chunked_prefill_gives_the_same_tokens(model: LocalModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt prefilled in chunks of 3 tokens continues exactly as one prefilled at once."""
    request = GenerationRequest(prompt=PROMPT + " " + PROMPT, max_tokens=10)
    whole = model.generate(request)
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK_TOKENS", 3)
    assert model.generate(request).token_ids == whole.token_ids


def test_stream_deltas_join_to_the_generated_text(model: LocalModel) -> None:
    """The streamed deltas joined equal generate()'s text, and the generator returns the same result."""
    request = GenerationRequest(prompt=PROMPT, max_tokens=40)
    expected = model.generate(request)
    stream = model.stream(request)
    deltas = []
    while True:
        try:
            deltas.append(next(stream))
        except StopIteration as finished:
            result = finished.value
            break
    assert "".join(deltas) == expected.text
    assert result == expected
    assert all(deltas)


def test_end_of_sequence_token_stops_with_reason_stop(tiny_model_dir: Path, tmp_path: Path) -> None:
    """When the model emits the eos token, generation ends before it with finish_reason 'stop'."""
    base = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none"))
    tokens = base.generate(GenerationRequest(prompt=PROMPT, max_tokens=10)).token_ids
    copy = shutil.copytree(tiny_model_dir, tmp_path / "eos-model")
    config = json.loads((copy / "config.json").read_text())
    config["eos_token_id"] = tokens[3]  # make the 4th greedy token the end of sequence
    (copy / "config.json").write_text(json.dumps(config))
    model = LocalModel(LocalModelConfig(model_path=copy, quantization="none"))
    result = model.generate(GenerationRequest(prompt=PROMPT, max_tokens=10))
    assert result.finish_reason == "stop"
    assert result.token_ids == tokens[: tokens.index(tokens[3])]


def test_context_window_ends_generation_with_reason_length(tiny_model_dir: Path) -> None:
    """Prompt plus completion never exceed context_tokens; hitting it is finish_reason 'length'."""
    model = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", context_tokens=16))
    result = model.generate(GenerationRequest(prompt="hello world", max_tokens=100))
    assert result.prompt_tokens + result.completion_tokens == 16
    assert result.finish_reason == "length"


def test_prompt_over_the_context_raises_context_too_long(tiny_model_dir: Path) -> None:
    """A prompt that leaves no room for an answer raises ContextTooLong naming both sizes."""
    model = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", context_tokens=8))
    with pytest.raises(ContextTooLong, match=r"context window is 8 tokens"):
        model.generate(GenerationRequest(prompt=PROMPT, max_tokens=4))
    with pytest.raises(ContextTooLong):
        list(model.stream(GenerationRequest(prompt=PROMPT, max_tokens=4)))


def test_cancel_event_stops_generation(model: LocalModel) -> None:
    """A set cancel event makes generate raise GenerationCancelled and marks batch rows 'cancelled'."""
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        model.generate(GenerationRequest(prompt=PROMPT, max_tokens=50), cancel=cancel)
    results = model.generate_batch(
        [GenerationRequest(prompt=PROMPT, max_tokens=5), GenerationRequest(prompt="Hi", max_tokens=5)],
        cancels=[cancel, None],
    )
    assert [r.finish_reason for r in results] == ["cancelled", "length"]


def test_memory_limit_below_the_estimate_refuses_to_load(tiny_model_dir: Path) -> None:
    """max_memory below the estimate raises ModelLoadError saying the estimate, the limit and the remedies."""
    with pytest.raises(ModelLoadError) as info:
        LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", max_memory_bytes=10_000_000))
    message = str(info.value)
    assert "estimated" in message and "10000000 bytes" in message
    for remedy in ("quantize", "batch_size", "max_memory"):
        assert remedy in message


def test_memory_estimate_grows_with_batch_size(tiny_model_dir: Path) -> None:
    """The exposed estimate counts the KV cache, so a bigger batch needs more memory."""
    small = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", batch_size=1))
    big = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", batch_size=8))
    assert big.estimated_memory_bytes > small.estimated_memory_bytes > (tiny_model_dir / "model.onnx").stat().st_size


def test_threads_are_clamped_to_usable_cores_with_a_warning(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """inference_threads above the cores this process may use is lowered to that count, and the log says so."""
    with caplog.at_level(logging.WARNING):
        model = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", inference_threads=64))
    assert model.threads == usable_cores()
    assert "inference_threads=64" in caplog.text


def test_clamp_threads_rule() -> None:
    """clamp_threads keeps requests within the cores, lowers larger ones, and obeys allow_oversubscribe."""
    assert clamp_threads(2, 4) == 2
    assert clamp_threads(4, 2) == 2
    assert clamp_threads(4, 2, allow_oversubscribe=True) == 4


def test_missing_files_raise_model_load_error(tmp_path: Path) -> None:
    """A directory without the model files raises ModelLoadError naming what is missing."""
    with pytest.raises(ModelLoadError, match="model.onnx, config.json, tokenizer.json"):
        LocalModel(LocalModelConfig(model_path=tmp_path, quantization="none"))
