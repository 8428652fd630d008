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
        model.run_batch([GenerationRequest(prompt="Hi", max_tokens=4), GenerationRequest(prompt=PROMPT, max_tokens=4)])


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
    for remedy in ("quantize", "context_tokens", "max_memory"):
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


# -- batches: per-row stopping, rows leaving, what a batch costs ------------------------------------

class ShapeRecordingModel(LocalModel):
    """A LocalModel that records the (rows, positions) of every attention mask it is given."""

    def __init__(self, config: LocalModelConfig) -> None:
        super().__init__(config)
        self.mask_shapes: list[tuple[int, int]] = []

    def forward(self, input_ids, attention_mask, position_ids, past):  # type: ignore[no-untyped-def]
        self.mask_shapes.append(attention_mask.shape)
        return super().forward(input_ids, attention_mask, position_ids, past)


def test_rows_that_reach_their_max_tokens_leave_the_batch(model: LocalModel) -> None:
    """Rows allowed 3, 10 and 6 tokens: decode steps run 3 rows, then 2, then 1, and every row still gets
    exactly its lone greedy tokens; the run reports the padded prefill and each step's rows."""
    requests = [GenerationRequest(prompt=PROMPT, max_tokens=3), GenerationRequest(prompt="Hi", max_tokens=10),
                GenerationRequest(prompt="Streams and tables", max_tokens=6)]
    run = model.run_batch(requests)
    assert [r.token_ids for r in run.results] == [model.generate(r).token_ids for r in requests]
    assert [rows for rows, _ in run.steps] == [3, 3, 2, 2, 2, 1, 1, 1, 1]
    assert all(seconds > 0 for _, seconds in run.steps) and run.prefill_s > 0
    assert run.prefill_tokens == 3 * model.count_tokens(PROMPT)


def test_a_row_that_hits_end_of_sequence_stops_alone(tiny_model_dir: Path, tmp_path: Path) -> None:
    """With the 4th greedy token of one prompt made the end-of-sequence token, that row ends 'stop' with
    three tokens and leaves the batch; the other row goes on to its max_tokens, as it would alone."""
    base = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none"))
    tokens = base.generate(GenerationRequest(prompt=PROMPT, max_tokens=10)).token_ids
    copy = shutil.copytree(tiny_model_dir, tmp_path / "eos-model")
    config = json.loads((copy / "config.json").read_text())
    config["eos_token_id"] = tokens[3]
    (copy / "config.json").write_text(json.dumps(config))
    eos_model = LocalModel(LocalModelConfig(model_path=copy, quantization="none"))
    requests = [GenerationRequest(prompt=PROMPT, max_tokens=10), GenerationRequest(prompt="Hi", max_tokens=10)]
    run = eos_model.run_batch(requests)
    alone = [eos_model.generate(r) for r in requests]
    assert [(r.finish_reason, r.token_ids) for r in run.results] == [(r.finish_reason, r.token_ids) for r in alone]
    assert run.results[0].finish_reason == "stop" and run.results[0].completion_tokens == 3
    assert run.results[1].finish_reason == "length" and run.results[1].completion_tokens == 10
    assert [rows for rows, _ in run.steps] == [2, 2, 2] + [1] * 6


def test_padding_no_remaining_row_needs_is_cut_when_the_long_row_leaves(tiny_model_dir: Path) -> None:
    """After the long prompt's row finishes, the short one decodes over its own positions only, with the
    same tokens as alone."""
    recorder = ShapeRecordingModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none",
                                                    context_tokens=512))
    long_prompt = " ".join([PROMPT] * 4)
    requests = [GenerationRequest(prompt=long_prompt, max_tokens=1), GenerationRequest(prompt="Hi", max_tokens=5)]
    run = recorder.run_batch(requests)
    assert [r.token_ids for r in run.results] == [recorder.generate(r).token_ids for r in requests]
    short = recorder.count_tokens("Hi")
    decode_masks = recorder.mask_shapes[1:5]  # the batch's four decode steps, after its one prefill call
    assert decode_masks == [(1, short + step) for step in range(1, 5)]


def test_cancelled_rows_leave_the_batch_at_once(model: LocalModel) -> None:
    """A row whose cancel event is set ends 'cancelled' with no tokens; every decode step runs without it."""
    cancel = threading.Event()
    cancel.set()
    run = model.run_batch([GenerationRequest(prompt=PROMPT, max_tokens=5), GenerationRequest(prompt="Hi", max_tokens=5)],
                          cancels=[cancel, None])
    assert [r.finish_reason for r in run.results] == ["cancelled", "length"]
    assert [rows for rows, _ in run.steps] == [1, 1, 1, 1]


def test_on_tokens_reports_each_step_tokens_in_order(model: LocalModel) -> None:
    """on_tokens gets the (row, token) pairs of every step; per row they make up its result's tokens."""
    seen: dict[int, list[int]] = {0: [], 1: []}

    def on_tokens(added: list[tuple[int, int]]) -> None:
        for row, token in added:
            seen[row].append(token)

    run = model.run_batch([GenerationRequest(prompt=PROMPT, max_tokens=4), GenerationRequest(prompt="Hi", max_tokens=7)],
                          on_tokens=on_tokens)
    assert [tuple(seen[0]), tuple(seen[1])] == [r.token_ids for r in run.results]


def test_a_batch_too_big_for_max_memory_at_full_context_still_loads(tiny_model_dir: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Only one full-context sequence must fit: a larger batch_size loads with a warning, and the memory
    budget tells the batching policy how many long rows fit."""
    probe = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", batch_size=1))
    limit = probe.memory_budget.batch_bytes(2, probe.context_tokens)  # two full-context rows, not eight
    with caplog.at_level(logging.WARNING):
        model = LocalModel(LocalModelConfig(model_path=tiny_model_dir, quantization="none", batch_size=8,
                                            max_memory_bytes=limit))
    assert "batch_size=8" in caplog.text and "fewer rows" in caplog.text
    assert model.memory_budget.fits(2, model.context_tokens) and not model.memory_budget.fits(3, model.context_tokens)
