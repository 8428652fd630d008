"""Each worker's side of the windows: outcomes counted on the hot path, sent to their owners in batches.

The answer stage (a result, each provider attempt) and intake (a cache hit)
call :meth:`OutcomeRecorder.result` and :meth:`OutcomeRecorder.calls`: a few
additions to a dict in memory (:class:`~llmrouter.core.windows.Deltas`), no
I/O. Every ``windows.flush_interval_s`` a task sends what was gathered to
``llm.router.outcomes``, one record per subject keyed by the subject, so the
one worker that owns the subject's partition adds every worker's counts up
(agents/windows.py). Why batches: one record per request would cost every
request a Kafka write and the owner a faust event each (about half a
millisecond of CPU); a batch costs one per subject per second whatever the load.

Each batch carries this process's sender id and a number that grows by one
per batch; a failed send is retried with the same number before anything
newer is sent, so the owner can tell a batch it took already (see
:func:`~llmrouter.core.windows.apply_batch`). The price of batching: a
worker SIGKILLed loses what it counted since its last flush (at most
``flush_interval_s`` of its outcomes); a worker that stops flushes first.

The same service sends a *tick* (a record with no key) to each partition of
``llm.router.outcomes`` this worker owns, every ``alerts.evaluate_interval_s``:
the owner judges the rules of that partition's subjects when the tick comes
round, after every batch written before it, with the tick's time as the clock
(and deletes the windows past retention, alerts on or off).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import faust
import mode
import psutil
import structlog
from faust.types import TP

from llmrouter.core.windows import Batch, Deltas
from llmrouter.dispatch.attempts import Dispatched
from llmrouter.runtime.clock import wall_ms

log = structlog.get_logger("llmrouter.windows")
SEND_ATTEMPTS = 5
WallMs = Callable[[], int]


class OutcomeRecorder(mode.Service):
    def __init__(self, app: faust.App, *, topic: str, worker: str, size_s: float, flush_interval_s: float,
                 evaluate_interval_s: float, now_ms: WallMs = wall_ms, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._app, self._topic, self._worker = app, topic, worker
        self._flush_s, self._tick_s = flush_interval_s, evaluate_interval_s
        self._now_ms = now_ms
        self._deltas = Deltas(round(size_s * 1000))
        self.sender = f"{worker}/{os.getpid()}/{uuid.uuid4().hex[:8]}"  # this process: its batch numbers are its own
        self._seq = 0
        self._owned: list[int] = []  # partitions of the outcomes topic this worker owns (ticks go there)
        self._process = psutil.Process(os.getpid())
        self.sent_batches = self.lost_batches = 0
        self._closing = False  # the app is stopping: its producer goes next
        self._flushing = asyncio.Lock()  # one flush at a time: a sender's batches must reach the topic in order

    # ---- the hot path: no I/O ----------------------------------------------------------------------------------

    def result(self, priority: str, record: dict[str, Any]) -> None:
        """A result sent (the answer stage, or intake's cache hit)."""
        self._deltas.result(priority=priority, status=record["status"], route=record.get("route") or "none",
                            latency_ms=float(record.get("total_latency_ms") or 0.0),
                            prompt_tokens=record.get("prompt_tokens") or 0,
                            completion_tokens=record.get("completion_tokens") or 0,
                            cost_usd=record.get("cost_usd") or 0.0,
                            at_ms=record.get("completed_at_ms") or self._now_ms())

    def calls(self, outcome: Dispatched) -> None:
        """Every attempt of one trip down the chain, and what the provider that answered used."""
        at_ms = self._now_ms()
        for attempt in outcome.attempts:
            self._deltas.call(provider=attempt.provider, outcome=attempt.outcome, latency_ms=attempt.latency_ms,
                              at_ms=at_ms)
        if outcome.ok and outcome.provider:
            gen = outcome.generation
            self._deltas.spent(provider=outcome.provider, prompt_tokens=gen.prompt_tokens,
                               completion_tokens=gen.completion_tokens, cost_usd=outcome.cost_usd, at_ms=at_ms)

    # ---- ownership ---------------------------------------------------------------------------------------------

    def on_assignment(self, owned: set[TP]) -> None:
        """What this worker owns now (RouterApp.assignment_listeners): tick only those partitions."""
        self._owned = sorted(tp.partition for tp in owned if tp.topic == self._topic)

    # ---- the background tasks ----------------------------------------------------------------------------------

    @mode.Service.task
    async def _flush_loop(self) -> None:
        while not self.should_stop and not self._closing:
            await self.sleep(self._flush_s)
            if not self._closing:
                await self.flush()

    @mode.Service.task
    async def _tick_loop(self) -> None:
        """Ticks go even with alerts off: the owner also deletes the windows past retention on a tick."""
        while not self.should_stop and not self._closing:
            await self.sleep(self._tick_s)
            if self._closing:
                return
            tick = json.dumps({"tick_ms": self._now_ms(), "sender": self.sender}).encode()
            try:
                await asyncio.gather(*[self._send(None, tick, partition) for partition in self._owned])
            except Exception as exc:  # a lost tick only delays the judgement to the next one
                log.warning("windows_tick_lost", error=repr(exc))

    async def before_shutdown(self, sender: Any = None, **kwargs: Any) -> None:
        """Send what was counted since the last flush, then nothing more (a SIGKILL gets no such chance).
        Connected to ``app.on_before_shutdown``: faust sends it after the consumer stopped (nothing more is
        counted) and before the producer flushes and stops; a service's own ``on_stop`` comes too late."""
        self._closing = True
        try:
            await asyncio.wait_for(self.flush(), timeout=5.0)
        except Exception as exc:
            log.warning("windows_final_flush_failed", error=repr(exc))

    async def flush(self) -> None:
        """One batch per subject, each numbered; retried with the same numbers until sent or given up."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        self._deltas.memory(worker=self._worker, rss_bytes=self._process.memory_info().rss, at_ms=self._now_ms())
        batches = []
        for subject, windows in self._deltas.drain().items():
            self._seq += 1
            batches.append((subject, Batch(self.sender, self._seq, windows)))
        for attempt in range(1, SEND_ATTEMPTS + 1):
            results = await asyncio.gather(*[self._send(subject.encode(), batch.to_bytes(), None)
                                             for subject, batch in batches], return_exceptions=True)
            failed = [item for item, result in zip(batches, results) if isinstance(result, BaseException)]
            self.sent_batches += len(batches) - len(failed)
            if not failed:
                return
            batches = failed
            log.warning("windows_batch_retried", batches=len(failed), attempt=attempt, error=repr(
                next(r for r in results if isinstance(r, BaseException))))
            await asyncio.sleep(0.2 * attempt)
        self.lost_batches += len(batches)
        log.error("windows_batches_lost", batches=len(batches), subjects=[s for s, _ in batches])

    async def _send(self, key: bytes | None, value: bytes, partition: int | None) -> None:
        sent = await self._app.producer.send(self._topic, key, value, partition, None, None)
        await sent
