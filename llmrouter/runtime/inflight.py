"""Work in flight: concurrent handlers per lane, fenced on rebalance and stop.

An agent hands each event to its :class:`Lane`, which runs the handler as a
:class:`Job` (up to ``limit`` at once) and acks the event when the handler
ends; :class:`~llmrouter.runtime.kafka.SafeCommitConsumer` then commits only
up to the first event not yet acked. A handler must decide what becomes of
its message (result, dead letter); if it raises anyway, the lane's
``on_failure`` does, and the event is acked after that.

A job goes through phases, each transition checked::

    QUEUED ──► CALLING ──► DELIVERING ──► DONE
       │                       ▲
       └───────────────────────┘          (and any phase ──► DONE)

QUEUED: nothing paid yet. CALLING: a provider call has started (money may be
spent). DELIVERING: writing the outcome (table, result, dead letter).

When partitions are revoked (a rebalance) or the worker stops,
:meth:`InFlight.drain` fences their jobs: QUEUED jobs are cancelled at once
(the next owner starts them from the last commit), CALLING jobs get a grace
period to finish and deliver, then are cancelled before they write anything;
no job of a fenced partition may start a provider call or start delivering
from QUEUED. A job of an older consumer generation may do neither either.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import faust
import structlog
from faust.types import TP
from mode import Service

from llmrouter.errors import Fenced

log = structlog.get_logger("llmrouter.inflight")

Handler = Callable[[faust.EventT, "Job"], Awaitable[None]]
OnFailure = Callable[[faust.EventT, BaseException], Awaitable[None]]


class Phase(enum.Enum):
    QUEUED = "queued"
    CALLING = "calling"
    DELIVERING = "delivering"
    DONE = "done"


_LEGAL = {
    Phase.QUEUED: {Phase.CALLING, Phase.DELIVERING, Phase.DONE},
    Phase.CALLING: {Phase.CALLING, Phase.DELIVERING, Phase.DONE},
    Phase.DELIVERING: {Phase.DONE},
    Phase.DONE: set(),
}


@dataclass(eq=False)
class Job:
    """One event being handled."""

    event: faust.EventT
    board: InFlight
    phase: Phase = Phase.QUEUED
    task: asyncio.Task | None = field(default=None, repr=False)
    lane_slot: asyncio.Semaphore | None = field(default=None, repr=False)  # held while the job runs, if any

    @property
    def tp(self) -> TP:
        return self.event.message.tp

    @property
    def generation(self) -> int | None:
        return self.event.message.generation_id

    async def wait_aside(self, seconds: float) -> None:
        """Wait without the lane slot (a retry's backoff): the lane takes the next events meanwhile, so a
        request waiting to retry delays no one behind it. The slot is taken back before the job goes on."""
        if self.lane_slot is None:
            await asyncio.sleep(seconds)
            return
        slot, self.lane_slot = self.lane_slot, None  # cancelled while aside: the lane has nothing to give back
        slot.release()
        await asyncio.sleep(seconds)
        await slot.acquire()
        self.lane_slot = slot

    def start_call(self) -> None:
        """Before each provider call: raise :class:`Fenced` if the job may no longer pay."""
        if self.board.fenced(self):
            raise Fenced(f"{self.tp.topic}[{self.tp.partition}] is being handed over: no new provider call")
        self._move(Phase.CALLING)

    def start_delivery(self) -> None:
        """Before the first write of the outcome: raise :class:`Fenced` if the job may not write."""
        if self.board.stale(self) or (self.phase is Phase.QUEUED and self.board.fenced(self)):
            raise Fenced(f"{self.tp.topic}[{self.tp.partition}] is being handed over: no write")
        self._move(Phase.DELIVERING)

    def _move(self, to: Phase) -> None:
        if to not in _LEGAL[self.phase]:
            raise RuntimeError(f"illegal job transition {self.phase.value} -> {to.value}")
        self.phase = to


class InFlight(Service):
    """Every job of every lane of this worker, and the fence around them."""

    def __init__(self, *, generation: Callable[[], int | None], grace_s: float, delivery_timeout_s: float,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._generation = generation
        self.grace_s = grace_s
        self.delivery_timeout_s = delivery_timeout_s
        self._jobs: set[Job] = set()
        self._fenced_tps: set[TP] = set()
        self._fence_all = False

    def lane(self, name: str, *, limit: int, handler: Handler, on_failure: OnFailure) -> Lane:
        return Lane(self, name, limit=limit, handler=handler, on_failure=on_failure)

    @property
    def jobs(self) -> int:
        return len(self._jobs)

    def describe(self) -> list[dict[str, object]]:
        """Every job under way: where its message is from and its phase (for the /work/ view)."""
        return [{"topic": job.tp.topic, "partition": job.tp.partition, "offset": job.event.message.offset,
                 "phase": job.phase.value} for job in sorted(self._jobs, key=lambda j: (j.tp, j.event.message.offset))]

    def busy_partitions(self) -> set[TP]:
        """The partitions with a job under way."""
        return {job.tp for job in self._jobs}

    def stale(self, job: Job) -> bool:
        return job.generation != self._generation()

    def fenced(self, job: Job) -> bool:
        return self._fence_all or job.tp in self._fenced_tps or self.stale(job)

    def admit(self, event: faust.EventT) -> Job | None:
        """A job for ``event``, or None when its partition is fenced (it will be delivered again)."""
        job = Job(event, self)
        if self.fenced(job):
            return None
        self._jobs.add(job)
        return job

    def finish(self, job: Job) -> None:
        job.phase = Phase.DONE
        self._jobs.discard(job)

    def resume(self) -> None:
        """New partitions are assigned (a new generation): jobs may start again."""
        self._fenced_tps.clear()

    async def drain(self, tps: set[TP] | None = None) -> dict[str, int]:
        """Fence ``tps`` (None: all, the worker is stopping) and wait for their jobs to settle.

        Returns how many jobs were cancelled while queued, finished within the grace
        period, and cancelled while calling.
        """
        if tps is None:
            self._fence_all = True
        else:
            self._fenced_tps |= tps
        jobs = [job for job in self._jobs if tps is None or job.tp in tps]
        queued = [job for job in jobs if job.phase is Phase.QUEUED]
        for job in queued:
            _cancel(job)
        busy = [job for job in jobs if job.phase is not Phase.QUEUED]
        await _settle(busy, self.grace_s)
        late = [job for job in busy if job.phase is Phase.CALLING]
        for job in late:
            _cancel(job)
        await _settle(jobs, self.delivery_timeout_s)
        for job in jobs:  # a write that hangs past the producer's own timeout
            _cancel(job)
        await _settle(jobs, 1.0)
        report = {"cancelled_queued": len(queued), "finished": len(busy) - len(late), "cancelled_calling": len(late)}
        if jobs:
            log.info("work_drained", partitions="all" if tps is None else len(tps), **report)
        return report

    async def on_stop(self) -> None:
        await self.drain(None)


class Lane:
    """Runs an agent's events concurrently (at most ``limit`` at once) and acks each when its job ends.

    A paused lane starts no new job (those under way go on) until it is resumed: the
    backpressure's hold on its priority (:mod:`llmrouter.runtime.backpressure`). The
    event it took meanwhile waits unacked, like one waiting for a slot.
    """

    def __init__(self, board: InFlight, name: str, *, limit: int, handler: Handler, on_failure: OnFailure) -> None:
        self.name = name
        self._board = board
        self._slots = asyncio.Semaphore(limit)
        self._handler = handler
        self._on_failure = on_failure
        self._open = asyncio.Event()
        self._open.set()

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def run(self, stream: faust.StreamT) -> None:
        """The agent's body."""
        manual = stream.noack()
        async for event in manual.events():
            await self._open.wait()
            await self._slots.acquire()
            job = self._board.admit(event)
            if job is None:
                self._slots.release()
                continue
            job.lane_slot = self._slots
            # The task copies the current context, so table writes inside it
            # are attributed to this event's partition.
            job.task = asyncio.create_task(self._run(manual, job), name=f"{self.name}@{event.message.offset}")

    async def _run(self, stream: faust.StreamT, job: Job) -> None:
        try:
            await self._settle(job)
            await stream.ack(job.event)
        except (Fenced, asyncio.CancelledError):
            pass  # not acked: the event is delivered again to whoever owns its partition next
        finally:
            self._board.finish(job)
            if job.lane_slot is not None:
                job.lane_slot.release()

    async def _settle(self, job: Job) -> None:
        try:
            await self._handler(job.event, job)
        except (Fenced, asyncio.CancelledError):
            raise
        except Exception as exc:  # the handler failed to decide: its failure path does
            message = job.event.message
            log.exception("handler_failed", lane=self.name, topic=message.topic, partition=message.partition,
                          offset=message.offset)
            try:
                await self._on_failure(job.event, exc)
            except (Fenced, asyncio.CancelledError):
                raise
            except Exception:  # a failure path must not raise; if it does, holding the message would hold
                # its partition's commit for good (every restart re-emitting all behind it): it is acked
                log.exception("failure_path_failed", lane=self.name, topic=message.topic,
                              partition=message.partition, offset=message.offset,
                              kept="acked: the message stays at this offset of its topic until the topic's retention")


def _cancel(job: Job) -> None:
    if job.task is not None and not job.task.done():
        job.task.cancel()


async def _settle(jobs: list[Job], timeout_s: float) -> None:
    tasks = [job.task for job in jobs if job.task is not None and not job.task.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s)
