"""The local model engine: an ONNX Runtime Llama decoder with a KV cache.

:class:`LocalModel` loads a model directory (see :mod:`.loading` for the
files and the int8 rule), refuses to load when the memory estimate
(:mod:`.memory`) of one full-context sequence exceeds ``max_memory_bytes``
(:attr:`LocalModel.memory_budget` then tells the batching policy how many
rows of a given length fit), and generates text:

* prefill the prompt (in chunks of ``PREFILL_CHUNK_TOKENS``), then decode one
  token per step, feeding ``present.*`` back as ``past_key_values.*``;
* greedy when ``temperature == 0``, else temperature / top-p sampling seeded
  per request;
* stop at an end-of-sequence token ("stop"), at ``max_tokens`` or at the
  context window ("length"), or when the caller's cancel event is set;
* several prompts in one pass with :meth:`LocalModel.generate_batch` /
  :meth:`LocalModel.run_batch` (left padding; positions counted from the
  attention mask, so each row computes what it would compute alone; each
  row stops on its own, and finished rows leave the batch so the others run
  as a smaller one).

Everything here is synchronous and CPU-bound: call it from a worker thread,
never from the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from llmrouter.errors import ContextTooLong, ModelLoadError
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.generation import GenerationCancelled, GenerationRequest, LocalResult
from llmrouter.localmodel.loading import clamp_threads, find_model_files, read_hf_config, usable_cores
from llmrouter.localmodel.memory import PREFILL_CHUNK_TOKENS, MemoryBudget, estimate_memory_bytes, weights_bytes
from llmrouter.localmodel.sampling import pick_token

__all__ = ["LocalModel", "BatchRun", "GenerationRequest", "LocalResult", "GenerationCancelled"]

log = logging.getLogger(__name__)

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class _Sequences:
    """Per-row bookkeeping of one decoding pass."""

    def __init__(self, requests: Sequence[GenerationRequest], budgets: list[int]) -> None:
        self.requests = requests
        self.budgets = budgets
        self.tokens: list[list[int]] = [[] for _ in requests]
        self.finish: list[str | None] = [None] * len(requests)
        self.rngs = [np.random.default_rng(r.seed) if r.temperature > 0 else None for r in requests]
        self.prefill_tokens = 0  # padded positions prefilled
        self.prefill_s = 0.0
        self.steps: list[tuple[int, float]] = []  # (rows, seconds) of each decode step

    @property
    def done(self) -> bool:
        """Whether every row has finished."""
        return all(f is not None for f in self.finish)


@dataclass(frozen=True, kw_only=True)
class BatchRun:
    """A finished batch: each request's result, and what the batch cost (the batching policy learns from it)."""

    results: list[LocalResult]
    prefill_tokens: int  # rows x padded prompt width
    prefill_s: float
    steps: list[tuple[int, float]]  # (rows in the step, seconds) of each decode step


class LocalModel:
    """A loaded local model; see the module docstring for the behaviour."""

    def __init__(self, config: LocalModelConfig, *, allow_oversubscribe: bool = False) -> None:
        self.config = config
        files = find_model_files(config.model_path, config.quantization)
        hf = read_hf_config(files.config)
        self.model_file = files.model
        self.quantized = files.quantized
        self.dims = hf.dims
        self.eos_token_ids = hf.eos_token_ids
        self.bos_token_id = hf.bos_token_id
        self.context_tokens = min(config.context_tokens, hf.max_positions)
        if self.context_tokens < config.context_tokens:
            log.warning("context_tokens=%d exceeds the model's %d positions; using %d.",
                        config.context_tokens, hf.max_positions, self.context_tokens)
        self.threads = clamp_threads(config.inference_threads, usable_cores(),
                                     allow_oversubscribe=allow_oversubscribe)
        weights = weights_bytes(files.model)
        self.memory_budget = MemoryBudget.for_model(hf.dims, weights=weights, limit_bytes=config.max_memory_bytes)
        self.estimated_memory_bytes = estimate_memory_bytes(
            hf.dims, weights=weights, batch_size=config.batch_size, context_tokens=self.context_tokens,
        )
        self._check_memory()
        self.tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self._session = self._open_session()
        self._bind_io()

    # -- loading -----------------------------------------------------------------------------

    def _check_memory(self) -> None:
        """Raise ModelLoadError unless one full-context sequence fits max_memory_bytes; warn when a
        full batch of them would not (the batching policy then runs fewer rows of long sequences)."""
        limit = self.config.max_memory_bytes
        one = self.memory_budget.batch_bytes(1, self.context_tokens)
        if one > limit:
            raise ModelLoadError(
                f"The model {self.model_file} needs an estimated {one / 2**30:.2f} GiB ({one} bytes) for one "
                f"sequence of context_tokens={self.context_tokens}, over the max_memory limit of "
                f"{limit / 2**30:.2f} GiB ({limit} bytes). Quantize it (`llmrouter model quantize SRC DST`, "
                "quantization: int8), lower context_tokens, or raise max_memory."
            )
        if self.estimated_memory_bytes > limit:
            log.warning("batch_size=%d sequences of %d tokens would need an estimated %.2f GiB, over max_memory "
                        "(%.2f GiB); batches of long sequences will run fewer rows.", self.config.batch_size,
                        self.context_tokens, self.estimated_memory_bytes / 2**30, limit / 2**30)

    def _open_session(self) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        except RuntimeError as exc:  # onnxruntime's Fail/InvalidGraph/NoSuchFile all derive from it
            raise ModelLoadError(f"ONNX Runtime cannot load {self.model_file}: {exc}") from exc

    def _bind_io(self) -> None:
        """Check the export's inputs/outputs and map present.* outputs to past_key_values.* inputs."""
        inputs = {i.name: i for i in self._session.get_inputs()}
        for required in ("input_ids", "attention_mask"):
            if required not in inputs:
                raise ModelLoadError(f"{self.model_file} has no {required!r} input; export it with "
                                     "--task text-generation-with-past.")
        self._has_position_ids = "position_ids" in inputs
        self._output_names = [o.name for o in self._session.get_outputs()]
        self._past_names = [n.replace("present", "past_key_values", 1) for n in self._output_names[1:]]
        if self._output_names[0] != "logits" or any(n not in inputs for n in self._past_names):
            raise ModelLoadError(f"{self.model_file} does not have the logits/present.* outputs of a "
                                 "decoder exported with past key values.")
        first_past = inputs[self._past_names[0]]
        self._cache_dtype = _ORT_DTYPES.get(first_past.type, np.float32)

    # -- tokens ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model's name: its directory name."""
        return self.config.model_path.name

    def encode(self, text: str) -> list[int]:
        """Prompt token ids as the model sees them (with ``<s>`` when the tokenizer adds it)."""
        ids = self.tokenizer.encode(text).ids
        if not ids and self.bos_token_id is not None:
            ids = [self.bos_token_id]
        return ids

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes as a prompt."""
        return len(self.encode(text))

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """Encode ``request.prompt``; ``ContextTooLong`` if no room is left for an answer."""
        ids = self.encode(request.prompt)
        if len(ids) >= self.context_tokens:
            raise ContextTooLong(
                f"The prompt has {len(ids)} tokens; the context window is {self.context_tokens} tokens "
                "and at least one must be left for the answer.", provider="local",
            )
        return ids

    # -- forward -----------------------------------------------------------------------------

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """A past key/value cache with no positions, for the first call."""
        shape = (batch, self.dims.kv_heads, 0, self.dims.head_dim)
        return [np.zeros(shape, dtype=self._cache_dtype) for _ in self._past_names]

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
                past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One model call: logits ``[batch, seq, vocab]`` and the new cache."""
        feed = dict(zip(self._past_names, past))
        feed["input_ids"] = input_ids
        feed["attention_mask"] = attention_mask
        if self._has_position_ids:
            feed["position_ids"] = position_ids
        outputs = self._session.run(self._output_names, feed)
        return outputs[0], outputs[1:]

    # -- generation --------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> LocalResult:
        """Generate the answer to one request; ``GenerationCancelled`` if ``cancel`` gets set."""
        return self.generate_from_ids(self.prompt_ids(request), request, cancel=cancel)

    def generate_from_ids(self, ids: Sequence[int], request: GenerationRequest, *,
                          cancel: threading.Event | None = None) -> LocalResult:
        """Like :meth:`generate` for an already tokenized prompt (``request.prompt`` is ignored)."""
        ids = list(ids)
        if not 0 < len(ids) < self.context_tokens:
            raise ContextTooLong(f"The prompt has {len(ids)} tokens; it must have between 1 and "
                                 f"{self.context_tokens - 1}.", provider="local")
        seqs = _Sequences([request], [self._budget(request, ids)])
        for _ in self._steps([ids], seqs, [cancel]):
            pass
        return self._result(seqs, 0, len(ids))

    def generate_batch(self, requests: Sequence[GenerationRequest], *,
                       cancels: Sequence[threading.Event | None] | None = None) -> list[LocalResult]:
        """Generate several requests in one pass, each stopping on its own.

        A request whose cancel event gets set ends with finish_reason
        "cancelled"; the others go on. Greedy results equal :meth:`generate`'s.
        """
        return self.run_batch(requests, cancels=cancels).results

    def run_batch(self, requests: Sequence[GenerationRequest], *,
                  cancels: Sequence[threading.Event | None] | None = None,
                  on_tokens: Callable[[list[tuple[int, int]]], None] | None = None) -> BatchRun:
        """:meth:`generate_batch` that also reports what the batch cost, and calls ``on_tokens``
        (on this thread) with the ``(row, token)`` pairs each step adds, for streaming rows."""
        prompts = [self.prompt_ids(r) for r in requests]
        seqs = _Sequences(requests, [self._budget(r, ids) for r, ids in zip(requests, prompts)])
        for added in self._steps(prompts, seqs, cancels or [None] * len(requests), raise_on_cancel=False):
            if on_tokens is not None and added:
                on_tokens(added)
        return BatchRun(results=[self._result(seqs, b, len(ids)) for b, ids in enumerate(prompts)],
                        prefill_tokens=seqs.prefill_tokens, prefill_s=seqs.prefill_s, steps=seqs.steps)

    def _budget(self, request: GenerationRequest, ids: list[int]) -> int:
        return min(request.max_tokens, self.context_tokens - len(ids))

    def _result(self, seqs: _Sequences, b: int, prompt_tokens: int) -> LocalResult:
        tokens = seqs.tokens[b]
        return LocalResult(
            text=self.tokenizer.decode(tokens, skip_special_tokens=True),
            token_ids=tuple(tokens),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens),
            finish_reason=seqs.finish[b] or "length",
        )

    def _prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Run the left-padded prompts in chunks; return last-position logits, mask and cache."""
        batch, width = len(prompts), max(len(p) for p in prompts)
        input_ids = np.zeros((batch, width), dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        for b, ids in enumerate(prompts):
            input_ids[b, width - len(ids):] = ids
            mask[b, width - len(ids):] = 1
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        past = self.empty_past(batch)
        for start in range(0, width, PREFILL_CHUNK_TOKENS):
            end = min(start + PREFILL_CHUNK_TOKENS, width)
            logits, past = self.forward(input_ids[:, start:end], mask[:, :end],
                                        positions[:, start:end], past)
        return logits[:, -1, :], mask, past

    def _steps(self, prompts: list[list[int]], seqs: _Sequences, cancels: Sequence[threading.Event | None],
               *, raise_on_cancel: bool = True) -> Iterator[list[tuple[int, int]]]:
        """Decode until every row is finished; yield the (row, token) pairs added by each step.

        Rows that finished leave the batch before the next step (see :func:`_drop_finished`),
        so the rest decode as a smaller, cheaper batch.
        """
        started = time.perf_counter()
        last, mask, past = self._prefill(prompts)
        seqs.prefill_s = time.perf_counter() - started
        seqs.prefill_tokens = mask.size
        live = list(range(len(prompts)))  # the request index of each row of the tensors
        positions = np.array([[len(p)] for p in prompts], dtype=np.int64)
        eos = self.eos_token_ids
        while True:
            added = []
            step_ids = np.zeros((len(live), 1), dtype=np.int64)
            for row, b in enumerate(live):
                request = seqs.requests[b]
                cancel = cancels[b]
                if cancel is not None and cancel.is_set():
                    if raise_on_cancel:
                        raise GenerationCancelled("The generation was cancelled.")
                    seqs.finish[b] = "cancelled"
                    continue
                token = pick_token(last[row], temperature=request.temperature, top_p=request.top_p,
                                   rng=seqs.rngs[b])
                step_ids[row, 0] = token
                if token in eos and not request.ignore_eos:
                    seqs.finish[b] = "stop"
                    continue
                seqs.tokens[b].append(token)
                added.append((b, token))
                if len(seqs.tokens[b]) >= seqs.budgets[b]:
                    seqs.finish[b] = "length"
            yield added
            if seqs.done:
                return
            keep = [row for row, b in enumerate(live) if seqs.finish[b] is None]
            if len(keep) < len(live):
                live = [live[row] for row in keep]
                step_ids, positions, mask, past = _drop_finished(keep, step_ids, positions, mask, past)
            mask = np.concatenate((mask, np.ones((len(live), 1), dtype=np.int64)), axis=1)
            started = time.perf_counter()
            logits, past = self.forward(step_ids, mask, positions, past)
            seqs.steps.append((len(live), time.perf_counter() - started))
            last = logits[:, -1, :]
            positions += 1


def _drop_finished(keep: list[int], step_ids: np.ndarray, positions: np.ndarray, mask: np.ndarray,
                   past: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Keep only the rows ``keep`` of the decoding state, and cut the leading positions that are
    padding in every row left (they are masked out, so removing them changes no result).

    ONNX Runtime copies the whole cache into ``present.*`` at every step anyway, so this one
    copy costs about what a step's cache copy does, and every later step runs fewer rows.
    """
    index = np.asarray(keep)
    mask = mask[index]
    first = int(np.argmax(mask.any(axis=0)))  # the first position some row still attends to
    return (step_ids[index], positions[index], mask[:, first:],
            [p[index, :, first:, :] for p in past])
