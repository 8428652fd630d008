"""The local ONNX model as an :class:`LLMProvider` (specification F005, F040).

Inference never runs on the event loop thread: the model is loaded and run
on a dedicated ``ThreadPoolExecutor`` with ``max_concurrent`` workers (one
by default), each running one batch at a time.

Every call, streamed or not, goes through one bounded queue, ordered by
priority then arrival (:class:`_Queue`). A request is refused at once with
:class:`~llmrouter.errors.Overloaded` (not retriable; the dispatcher moves
on to the next provider) when the queue is full or when the work ahead of
it would take it past its deadline. Whenever a worker is free or a request
arrives, :class:`~llmrouter.localmodel.batching.BatchPolicy` decides how
many queued requests run together and how long to wait for more first
(``batching: latency | balanced | throughput``, ``max_batch_wait_s``,
``batch_size``, and the memory budget); it learns the arrival rate and what
batches cost from the batches run. A batch runs through
:meth:`LocalModel.run_batch`: left padding, attention masks, each row
stopping on its own, finished rows leaving the batch. Streamed requests are
rows of a batch like any other, their tokens decoded to text deltas as each
step adds them.

Each call honours ``timeout_s`` and the prompt's deadline (queueing
included): on timeout the caller gets :class:`ProviderTimeout` and the row's
cancel event is set, so the batch drops it at its next step instead of
burning CPU for nobody. :meth:`LocalProvider.batch_stats` is what
``/providers/`` shows of it: queue, batches by size, refusals, learned costs.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from llmrouter.errors import BadRequest, Overloaded, ProviderError, ProviderTimeout, ProviderUnavailable, RouterError
from llmrouter.localmodel.batching import ArrivalRate, BatchPolicy, BatchPolicyConfig, Decision, Queued, StepCost
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.detokenize import IncrementalDecoder
from llmrouter.localmodel.engine import BatchRun, GenerationRequest, LocalModel, LocalResult
from llmrouter.providers.base import Capabilities, Deadline, Generation, Health, LLMProvider, Prompt, StreamDelta

__all__ = ["LocalProvider"]

log = structlog.get_logger("llmrouter.local")

_HEALTH_PROMPT = Prompt(text="Hello", max_tokens=1, priority=0)
_END = ("end", None)  # the last item on a streamed job's delta queue


@dataclass(eq=False)
class _Job:
    """One call waiting for, or running in, a batch."""

    request: GenerationRequest
    queued: Queued
    order: tuple[int, int]  # (priority, arrival): the queue's service order
    future: asyncio.Future[LocalResult]
    cancel: threading.Event = field(default_factory=threading.Event)
    deltas: asyncio.Queue[tuple[str, Any]] | None = None  # streamed calls only
    deadline: Deadline | None = None  # the prompt's, on the caller's clock


class _Queue:
    """Jobs waiting for a worker, most urgent first, then first come first served."""

    def __init__(self) -> None:
        self._jobs: list[_Job] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: _Job) -> None:
        bisect.insort(self._jobs, job, key=lambda j: j.order)

    def views(self) -> list[Queued]:
        return [job.queued for job in self._jobs]

    def take(self, count: int) -> list[_Job]:
        taken, self._jobs = self._jobs[:count], self._jobs[count:]
        return taken

    def drop_abandoned(self) -> None:
        """Forget jobs whose caller has gone (timed out or cancelled while queued)."""
        self._jobs = [job for job in self._jobs if not job.future.done()]


class _Stats:
    """What the batching front did since start, for ``/providers/``."""

    def __init__(self) -> None:
        self.batches = 0
        self.rows = 0
        self.sizes: Counter[int] = Counter()
        self.reasons: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.tokens = 0
        self.busy_s = 0.0
        self.last: dict[str, Any] = {}

    def record(self, jobs: list[_Job], decision: Decision, run: BatchRun, wall_s: float) -> None:
        tokens = sum(r.completion_tokens for r in run.results)
        self.batches += 1
        self.rows += len(jobs)
        self.sizes[len(jobs)] += 1
        self.reasons[decision.reason] += 1
        self.tokens += tokens
        self.busy_s += wall_s
        self.last = {"size": len(jobs), "reason": decision.reason, "tokens": tokens,
                     "prefill_ms": round(run.prefill_s * 1000, 3), "wall_ms": round(wall_s * 1000, 3),
                     "decode_steps": len(run.steps), "streams": sum(1 for j in jobs if j.deltas is not None)}


class LocalProvider(LLMProvider):
    """Answers prompts with the local model; free, private, CPU-bound."""

    name = "local"

    def __init__(
        self,
        config: LocalModelConfig,
        *,
        model_factory: Callable[[LocalModelConfig], LocalModel] = LocalModel,
    ) -> None:
        self._config = config
        self._model_factory = model_factory
        self._model: LocalModel | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._policy_config = BatchPolicyConfig(mode=config.batching, max_batch=config.batch_size,
                                                max_wait_s=config.max_batch_wait_s, max_queue=config.max_queue,
                                                workers=config.max_concurrent)
        self._policy = BatchPolicy(self._policy_config)
        self._queue = _Queue()
        self._arrivals = itertools.count()
        self._rate = ArrivalRate()
        self._cost = StepCost()
        self._stats = _Stats()
        self._busy_until: dict[int, float] = {}  # worker -> when its batch is expected to end
        self._running: dict[int, list[_Job]] = {}
        self._wakeup: asyncio.Event | None = None
        self._holding = 0  # workers waiting for a batch to fill
        self._workers: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the worker pool, load the model on it (``ModelLoadError`` if it cannot) and start serving.

        The batching workers are tasks of the running event loop: call the provider from that loop."""
        self._pool = ThreadPoolExecutor(max_workers=self._config.max_concurrent, thread_name_prefix="local-model")
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._pool, self._model_factory, self._config)
        self._policy = BatchPolicy(self._policy_config, memory=self._model.memory_budget)
        self._wakeup = asyncio.Event()
        self._workers = [loop.create_task(self._serve(worker), name=f"local-model-batcher-{worker}")
                         for worker in range(self._config.max_concurrent)]

    async def stop(self) -> None:
        """Cancel running generations, fail running and queued calls, and shut the worker pool down."""
        stopped = ProviderUnavailable("The local provider stopped.", provider=self.name)
        for jobs in self._running.values():
            for job in jobs:
                job.cancel.set()
                _fail(job, stopped)
        for task in self._workers:
            task.cancel()
        self._workers = []
        for job in self._queue.take(len(self._queue)):
            _fail(job, stopped)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        self._model = None

    # -- LLMProvider -------------------------------------------------------------------------

    async def generate(self, prompt: Prompt) -> Generation:
        """Answer ``prompt`` in a batch, within ``timeout_s`` and the prompt's deadline."""
        job = self._submit(prompt, streaming=False)
        try:
            result = await asyncio.wait_for(job.future, self._time_left(job))
        except TimeoutError:
            raise self._timeout() from None
        finally:
            job.cancel.set()
            if not job.future.done():
                job.future.cancel()
        return self._generation(result)

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        """Answer ``prompt`` delta by delta as its batch decodes; the last delta carries the :class:`Generation`."""
        job = self._submit(prompt, streaming=True)
        assert job.deltas is not None
        try:
            while True:
                kind, value = await self._next_delta(job)
                if kind == "delta":
                    yield StreamDelta(delta=value)
                    continue
                result = job.future.result()  # the batch ended: a result, or the error it raises
                yield StreamDelta(delta="", final=self._generation(result))
                return
        finally:
            job.cancel.set()
            if not job.future.done():
                job.future.cancel()

    async def health_check(self) -> Health:
        """Healthy when the model is loaded and a one-token generation works; reports its latency."""
        if self._model is None:
            return Health(healthy=False, detail="The local model is not loaded.")
        started = time.monotonic()
        try:
            await self.generate(_HEALTH_PROMPT)
        except ProviderError as exc:
            return Health(healthy=False, detail=f"{exc.code}: {exc}", latency_s=time.monotonic() - started)
        detail = f"{self._model.name}: one-token generation ok on {self._model.threads} thread(s)"
        return Health(healthy=True, detail=detail, latency_s=time.monotonic() - started)

    def get_capabilities(self) -> Capabilities:
        """The model directory's name, its context window, streaming, batching when batch_size > 1."""
        context = self._model.context_tokens if self._model is not None else self._config.context_tokens
        return Capabilities(
            models=(self._config.model_path.name,),
            context_tokens=context,
            streaming=True,
            batching=self._config.batch_size > 1,
            local=True,
        )

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Local inference is free: always 0.0 dollars."""
        return 0.0

    def count_tokens(self, text: str) -> int:
        """Tokens by the model's own tokenizer once loaded; the base heuristic before ``start``."""
        if self._model is None:
            return super().count_tokens(text)
        return self._model.count_tokens(text)

    def batch_stats(self) -> dict[str, Any]:
        """The batching front now and since start (``/providers/`` shows it)."""
        now = time.monotonic()
        stats = self._stats
        return {
            "mode": self._policy_config.mode, "max_batch": self._policy_config.max_batch,
            "max_wait_ms": round(self._policy_config.wait_s * 1000, 3), "max_queue": self._policy_config.max_queue,
            "queued": len(self._queue), "running": sum(len(jobs) for jobs in self._running.values()),
            "holding": self._holding,
            "batches": stats.batches, "rows": stats.rows, "tokens": stats.tokens,
            "busy_s": round(stats.busy_s, 3),
            "sizes": {str(size): count for size, count in sorted(stats.sizes.items())},
            "largest": max(stats.sizes, default=0), "reasons": dict(stats.reasons),
            "refused": dict(stats.refused), "last": stats.last,
            "arrival_rate_per_s": round(self._rate.per_s(now), 3),
            "learned": {"prefill_ms_per_token": _ms(self._cost.prefill_s_per_token),
                        "step_ms_by_rows": {str(rows): _ms(self._cost.step_s(rows))
                                            for rows in range(1, self._policy_config.max_batch + 1)}
                        if self._cost.known else {},
                        "used_share_of_max_tokens": round(self._cost.used_share, 3)},
        }

    # -- queueing ----------------------------------------------------------------------------

    def _submit(self, prompt: Prompt, *, streaming: bool) -> _Job:
        """Admit and queue one call, or raise why not (BadRequest, ContextTooLong, Overloaded)."""
        model = self._require_model()
        request = _to_request(prompt)
        ids = model.prompt_ids(request)  # a prompt that cannot fit fails alone, not its batch
        now = time.monotonic()
        deadline = now + self._config.timeout_s  # the queue's own (monotonic) time, for the batch policy
        if prompt.deadline is not None:
            deadline = min(deadline, now + prompt.deadline.left_s())
        queued = Queued(prompt_tokens=len(ids), max_tokens=min(request.max_tokens, model.context_tokens - len(ids)),
                        arrived_s=now, deadline_s=deadline, priority=prompt.priority)
        self._rate.record(now)
        self._queue.drop_abandoned()
        refusal = self._policy.admit(self._queue.views(), queued, now_s=now,
                                     busy_until_s=list(self._busy_until.values()), cost=self._cost)
        if refusal is not None:
            self._stats.refused[refusal.kind] += 1
            raise Overloaded(refusal.reason, provider=self.name)
        loop = asyncio.get_running_loop()
        job = _Job(request=request, queued=queued, order=(prompt.priority, next(self._arrivals)),
                   future=loop.create_future(), deltas=asyncio.Queue() if streaming else None, deadline=prompt.deadline)
        self._queue.add(job)
        assert self._wakeup is not None
        self._wakeup.set()
        return job

    async def _serve(self, worker: int) -> None:
        """One worker: ask the policy, wait or run a batch, forever (until stop cancels it)."""
        assert self._wakeup is not None
        while True:
            self._wakeup.clear()
            self._queue.drop_abandoned()
            now = time.monotonic()
            decision = self._policy.next_batch(self._queue.views(), now_s=now, rate_per_s=self._rate.per_s(now),
                                               cost=self._cost)
            if decision.take:
                await self._run(worker, self._queue.take(decision.take), decision)
                continue
            if decision.reason == "empty":
                await self._wakeup.wait()
                continue
            self._holding += 1
            try:  # an arrival wakes us early
                await asyncio.wait_for(self._wakeup.wait(), decision.wait_s)
            except TimeoutError:
                pass
            finally:
                self._holding -= 1

    async def _run(self, worker: int, jobs: list[_Job], decision: Decision) -> None:
        """Run one batch on the pool and hand each caller its result."""
        model = self._require_model()
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._busy_until[worker] = started + (self._cost.batch_s([j.queued for j in jobs]) or 0.0)
        self._running[worker] = jobs
        try:
            run = await loop.run_in_executor(self._pool, _run_batch, model, jobs, loop)
        except (RouterError, RuntimeError) as exc:  # ONNX Runtime failures surface as RuntimeError
            for job in jobs:
                _fail(job, _provider_error(exc, self.name))
            return
        except Exception as exc:  # the worker loop's boundary: fail this batch's callers, keep serving
            log.exception("local_batch_failed", size=len(jobs))
            for job in jobs:
                _fail(job, _provider_error(exc, self.name))
            return
        finally:
            self._busy_until.pop(worker, None)
            self._running.pop(worker, None)
        wall_s = time.monotonic() - started
        self._learn(jobs, run)
        self._stats.record(jobs, decision, run, wall_s)
        log.info("local_batch", size=len(jobs), reason=decision.reason, queued=len(self._queue),
                 tokens=self._stats.last["tokens"], wall_ms=self._stats.last["wall_ms"])
        for job, result in zip(jobs, run.results):
            if not job.future.done():
                job.future.set_result(result)
            if job.deltas is not None:
                job.deltas.put_nowait(_END)

    def _learn(self, jobs: list[_Job], run: BatchRun) -> None:
        """Fold what the batch cost into the estimates the policy decides by."""
        self._cost.observe_prefill(run.prefill_tokens, run.prefill_s)
        for rows, seconds in run.steps:
            self._cost.observe_step(rows, seconds)
        for job, result in zip(jobs, run.results):
            if result.finish_reason != "cancelled":
                self._cost.observe_usage(job.queued.max_tokens, result.completion_tokens)

    # -- internals ---------------------------------------------------------------------------

    def _require_model(self) -> LocalModel:
        if self._model is None:
            raise ProviderUnavailable("The local model is not loaded; call start() first.", provider=self.name)
        return self._model

    def _time_left(self, job: _Job) -> float:
        """The time left of the call's own timeout, and of the prompt's deadline asked on its own clock."""
        left = job.queued.deadline_s - time.monotonic()
        if job.deadline is not None:
            left = min(left, job.deadline.left_s())
        return max(0.0, left)

    def _timeout(self) -> ProviderTimeout:
        return ProviderTimeout(f"The local model gave no answer within {self._config.timeout_s} s "
                               "or the request's deadline.", provider=self.name)

    async def _next_delta(self, job: _Job) -> tuple[str, Any]:
        """The next item of a streamed job; ``ProviderTimeout`` if none comes before its deadline."""
        assert job.deltas is not None
        if not job.deltas.empty():
            return job.deltas.get_nowait()
        try:
            return await asyncio.wait_for(job.deltas.get(), self._time_left(job))
        except TimeoutError:
            raise self._timeout() from None

    def _generation(self, result: LocalResult) -> Generation:
        return Generation(
            text=result.text,
            model=self._config.model_path.name,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            finish_reason=result.finish_reason,
        )


def _run_batch(model: LocalModel, jobs: list[_Job], loop: asyncio.AbstractEventLoop) -> BatchRun:
    """On a pool thread: run the batch, posting streamed rows' text deltas to their queues as they come."""
    decoders = {row: IncrementalDecoder(model.tokenizer) for row, job in enumerate(jobs) if job.deltas is not None}

    def post(row: int, text: str) -> None:
        if text and not jobs[row].cancel.is_set():
            loop.call_soon_threadsafe(jobs[row].deltas.put_nowait, ("delta", text))  # type: ignore[union-attr]

    def on_tokens(added: list[tuple[int, int]]) -> None:
        for row, token in added:
            if row in decoders:
                post(row, decoders[row].add(token))

    run = model.run_batch([job.request for job in jobs], cancels=[job.cancel for job in jobs],
                          on_tokens=on_tokens if decoders else None)
    for row, decoder in decoders.items():
        post(row, decoder.flush())
    return run


def _fail(job: _Job, error: ProviderError) -> None:
    """End a job with ``error`` (a streamed one also gets the end of its deltas)."""
    if not job.future.done():
        job.future.set_exception(error)
    if job.deltas is not None:
        job.deltas.put_nowait(_END)


def _to_request(prompt: Prompt) -> GenerationRequest:
    """The engine request for ``prompt``; ``BadRequest`` for values the engine rejects."""
    try:
        return GenerationRequest(prompt=prompt.as_text(), max_tokens=prompt.max_tokens,
                                 temperature=prompt.temperature, seed=prompt.seed)
    except ValueError as exc:
        raise BadRequest(str(exc), provider="local") from exc


def _provider_error(exc: object, provider: str) -> ProviderError:
    """Map what a worker raised to the provider error tree."""
    if isinstance(exc, ProviderError):
        return exc
    return ProviderUnavailable(f"The local model failed: {exc}", provider=provider)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)
