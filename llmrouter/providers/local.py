"""The local ONNX model as an :class:`LLMProvider` (specification F005).

Inference never runs on the event loop thread: the model is loaded and run
on a dedicated ``ThreadPoolExecutor`` with ``max_concurrent`` workers (one
by default). Each call honours ``timeout_s`` (queueing included): on
timeout the caller gets :class:`ProviderTimeout` and the generation's cancel
event is set, so the worker stops at its next decoding step instead of
burning CPU for nobody.

With ``batch_size > 1`` a small batching front collects the requests that
arrive while the model is busy, up to ``batch_size``, and runs them together
through :meth:`LocalModel.generate_batch` (LOCAL_MODEL.md: four sequences
give 3.4x the tokens per second of one). With ``batch_size == 1`` requests
simply queue for the worker. Streams always run alone.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from llmrouter.errors import BadRequest, ProviderError, ProviderTimeout, ProviderUnavailable, RouterError
from llmrouter.localmodel.config import LocalModelConfig
from llmrouter.localmodel.engine import GenerationRequest, LocalModel, LocalResult
from llmrouter.providers.base import Capabilities, Generation, Health, LLMProvider, Prompt, StreamDelta

__all__ = ["LocalProvider"]

_HEALTH_PROMPT = Prompt(text="Hello", max_tokens=1)


@dataclass(frozen=True)
class _Job:
    """A request waiting for the batching front."""

    request: GenerationRequest
    cancel: threading.Event
    future: asyncio.Future[LocalResult]


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
        self._pending: deque[_Job] = deque()
        self._drainers: set[asyncio.Task[None]] = set()
        self._active_cancels: set[threading.Event] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the worker pool and load the model on it (``ModelLoadError`` if it cannot)."""
        self._pool = ThreadPoolExecutor(max_workers=self._config.max_concurrent, thread_name_prefix="local-model")
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._pool, self._model_factory, self._config)

    async def stop(self) -> None:
        """Cancel running generations, fail queued ones, and shut the worker pool down."""
        for cancel in list(self._active_cancels):
            cancel.set()
        for task in list(self._drainers):
            task.cancel()
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(ProviderUnavailable("The local provider stopped.", provider=self.name))
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        self._model = None

    # -- LLMProvider -------------------------------------------------------------------------

    async def generate(self, prompt: Prompt) -> Generation:
        """Answer ``prompt`` on the worker thread within ``timeout_s``."""
        model = self._require_model()
        request = _to_request(prompt)
        cancel = threading.Event()
        self._active_cancels.add(cancel)
        try:
            if self._config.batch_size > 1:
                model.prompt_ids(request)  # a prompt that cannot fit fails alone, not its batch
                work: asyncio.Future[LocalResult] = self._enqueue(request, cancel)
            else:
                call = functools.partial(model.generate, request, cancel=cancel)
                work = asyncio.get_running_loop().run_in_executor(self._pool, call)
            result = await asyncio.wait_for(work, self._config.timeout_s)
        except TimeoutError:
            raise self._timeout() from None
        except RuntimeError as exc:  # ONNX Runtime failures surface as RuntimeError
            raise ProviderUnavailable(f"The local model failed: {exc}", provider=self.name) from exc
        finally:
            cancel.set()
            self._active_cancels.discard(cancel)
        return self._generation(result)

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        """Answer ``prompt`` delta by delta; the last delta carries the :class:`Generation`."""
        model = self._require_model()
        request = _to_request(prompt)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        cancel = threading.Event()
        self._active_cancels.add(cancel)
        loop.run_in_executor(self._pool, _stream_worker, model, request, cancel, loop, queue)
        deadline = loop.time() + self._config.timeout_s
        try:
            while True:
                kind, value = await self._next_item(queue, deadline)
                if kind == "delta":
                    yield StreamDelta(delta=str(value))
                elif kind == "done":
                    assert isinstance(value, LocalResult)
                    yield StreamDelta(delta="", final=self._generation(value))
                    return
                else:
                    raise _provider_error(value, self.name)
        finally:
            cancel.set()
            self._active_cancels.discard(cancel)

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

    # -- internals ---------------------------------------------------------------------------

    def _require_model(self) -> LocalModel:
        if self._model is None:
            raise ProviderUnavailable("The local model is not loaded; call start() first.", provider=self.name)
        return self._model

    def _timeout(self) -> ProviderTimeout:
        return ProviderTimeout(f"The local model gave no answer within {self._config.timeout_s} s.",
                               provider=self.name)

    def _generation(self, result: LocalResult) -> Generation:
        return Generation(
            text=result.text,
            model=self._config.model_path.name,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            finish_reason=result.finish_reason,
        )

    async def _next_item(self, queue: asyncio.Queue[tuple[str, object]], deadline: float) -> tuple[str, object]:
        """The next item from a stream worker; ``ProviderTimeout`` if none comes before ``deadline``."""
        if not queue.empty():
            return queue.get_nowait()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise self._timeout()
        try:
            return await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            raise self._timeout() from None

    def _enqueue(self, request: GenerationRequest, cancel: threading.Event) -> asyncio.Future[LocalResult]:
        """Queue a request for the batching front, starting a drainer if a worker is free."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LocalResult] = loop.create_future()
        self._pending.append(_Job(request, cancel, future))
        if len(self._drainers) < self._config.max_concurrent:
            task = loop.create_task(self._drain())
            self._drainers.add(task)
            task.add_done_callback(self._drainers.discard)
        return future

    async def _drain(self) -> None:
        """Run queued requests in batches of up to ``batch_size`` until the queue is empty."""
        loop = asyncio.get_running_loop()
        while self._pending:
            jobs: list[_Job] = []
            while self._pending and len(jobs) < self._config.batch_size:
                job = self._pending.popleft()
                if not job.future.done():  # timed out while queued
                    jobs.append(job)
            if not jobs:
                continue
            call = functools.partial(
                self._require_model().generate_batch,
                [job.request for job in jobs],
                cancels=[job.cancel for job in jobs],
            )
            try:
                results = await loop.run_in_executor(self._pool, call)
            except (RouterError, RuntimeError) as exc:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(_provider_error(exc, self.name))
                continue
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)


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


def _stream_worker(model: LocalModel, request: GenerationRequest, cancel: threading.Event,
                   loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[str, object]]) -> None:
    """Run ``model.stream`` on the worker thread, posting each delta to ``queue`` on ``loop``."""
    generator = model.stream(request, cancel=cancel)
    try:
        while True:
            try:
                delta = next(generator)
            except StopIteration as finished:
                item: tuple[str, object] = ("done", finished.value)
                break
            if cancel.is_set():
                return
            loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))
    except (RouterError, RuntimeError) as exc:
        item = ("error", exc)
    if not cancel.is_set():
        loop.call_soon_threadsafe(queue.put_nowait, item)
