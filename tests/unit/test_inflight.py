"""Work in flight: job phases, the fence, and what a drain does to each phase.

Real asyncio tasks, no Kafka: an event here is only what InFlight reads of it
(its partition and consumer generation); the ack goes to a recording stream.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs
from faust.types import TP

from llmrouter.runtime.inflight import Fenced, InFlight, Job, Phase

TP0, TP1 = TP("accepted", 0), TP("accepted", 1)


def event(tp: TP = TP0, offset: int = 0, generation: int = 1) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset, generation_id=generation, topic=tp.topic,
                                                   partition=tp.partition))


class AckedStream:
    """Stands where faust's manual-ack stream is: records what was acked."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, ev) -> None:
        self.acked.append(ev.message.offset)


@pytest.fixture
def consumer():
    """The consumer generation InFlight reads (faust's app.consumer_generation_id)."""
    return SimpleNamespace(generation=1)


@pytest.fixture
def board(consumer):
    return InFlight(generation=lambda: consumer.generation, grace_s=0.3, delivery_timeout_s=0.3)


def run(board: InFlight, handler, *, offset: int = 0, tp: TP = TP0, stream: AckedStream | None = None,
        on_failure=None) -> Job:
    """Admit an event and run it through a lane the way its agent would."""
    async def no_failure(ev, exc):
        raise AssertionError(f"unexpected failure {exc!r}")

    lane = board.lane("test", limit=10, handler=handler, on_failure=on_failure or no_failure)
    job = board.admit(event(tp, offset))
    assert job is not None
    job.task = asyncio.create_task(lane._run(stream or AckedStream(), job))
    return job


def test_phases_move_only_forward():
    """QUEUED -> CALLING -> DELIVERING -> DONE; delivering twice is a bug, not a state."""
    board = InFlight(generation=lambda: 1, grace_s=1, delivery_timeout_s=1)
    job = board.admit(event())
    job.start_call()
    job.start_call()  # a retry, or the next provider in the chain
    job.start_delivery()
    assert job.phase is Phase.DELIVERING
    with pytest.raises(RuntimeError, match="illegal job transition delivering -> calling"):
        job.start_call()


async def test_a_drain_cancels_queued_jobs_before_they_pay(board):
    """A job still waiting (a bulkhead, a duplicate) is cancelled at once and never acked."""
    stream = AckedStream()
    started = asyncio.Event()

    async def waits_for_a_slot(ev, job):
        started.set()
        await asyncio.sleep(30)
        job.start_call()

    job = run(board, waits_for_a_slot, stream=stream)
    await started.wait()
    report = await board.drain({TP0})
    assert report == {"cancelled_queued": 1, "finished": 0, "cancelled_calling": 0}
    assert job.task.done() and stream.acked == [] and board.jobs == 0


async def test_a_call_under_way_finishes_within_the_grace_period_and_is_acked(board):
    """A provider call that ends inside the grace period delivers and acks; nothing new may start."""
    stream = AckedStream()
    calling = asyncio.Event()

    async def short_call(ev, job):
        job.start_call()
        calling.set()
        await asyncio.sleep(0.1)
        job.start_delivery()

    run(board, short_call, offset=5, stream=stream)
    await calling.wait()
    report = await board.drain({TP0})
    assert report == {"cancelled_queued": 0, "finished": 1, "cancelled_calling": 0}
    assert stream.acked == [5]
    assert board.admit(event(TP0, 6)) is None  # the partition is fenced until the next assignment
    assert board.admit(event(TP1, 6)) is not None  # others are not


async def test_a_call_over_the_grace_period_is_cancelled_before_it_writes(board):
    """Past the grace period the call is cancelled; it never reaches its delivery."""
    stream = AckedStream()
    calling, wrote = asyncio.Event(), []

    async def long_call(ev, job):
        job.start_call()
        calling.set()
        await asyncio.sleep(5)
        job.start_delivery()
        wrote.append(ev)

    run(board, long_call, stream=stream)
    await calling.wait()
    report = await board.drain(None)
    assert report == {"cancelled_queued": 0, "finished": 0, "cancelled_calling": 1}
    assert wrote == [] and stream.acked == []


async def test_a_fenced_job_may_not_start_a_call_nor_deliver_from_queued(board, consumer):
    """After a drain began, start_call raises Fenced; so does a queued job's first write;
    a job of an older generation may do neither after the next assignment either."""
    job = board.admit(event())
    await board.drain({TP0})
    with pytest.raises(Fenced):
        job.start_call()
    with pytest.raises(Fenced):
        job.start_delivery()
    board.resume()
    consumer.generation = 2
    with pytest.raises(Fenced):
        job.start_call()
    assert board.admit(event(TP0, 9, generation=2)) is not None


async def test_a_handler_that_raises_is_settled_by_its_failure_path_and_acked(board):
    """The lane hands the exception to on_failure (a dead letter, in the router), then acks."""
    stream, failures = AckedStream(), []

    async def broken(ev, job):
        raise KeyError("a bug")

    async def on_failure(ev, exc):
        failures.append(repr(exc))

    job = run(board, broken, offset=3, stream=stream, on_failure=on_failure)
    await job.task
    assert failures == ["KeyError('a bug')"] and stream.acked == [3]


async def test_a_failure_path_that_raises_is_logged_and_the_event_acked(board):
    """A failure path must never raise; if it does, the lane still acks (an unacked event would hold its
    partition's commit for good) and says so in its log, with the message's coordinates."""
    stream = AckedStream()

    async def broken(ev, job):
        raise KeyError("a bug")

    async def failing_failure(ev, exc):
        raise RuntimeError("its dead letter failed too")

    job = run(board, broken, offset=4, stream=stream, on_failure=failing_failure)
    with capture_logs() as logs:
        await job.task
    assert stream.acked == [4] and board.jobs == 0
    failed = [entry for entry in logs if entry["event"] == "failure_path_failed"]
    assert len(failed) == 1 and failed[0]["offset"] == 4, logs


async def test_a_fenced_handler_is_neither_settled_nor_acked(board):
    """Fenced means "leave it to the next owner": no failure path, no ack."""
    stream = AckedStream()

    async def fenced(ev, job):
        raise Fenced("handed over")

    job = run(board, fenced, stream=stream)
    await job.task
    assert stream.acked == [] and board.jobs == 0


class Events:
    """A stand-in for the agent's manual-ack stream: the events given, then acks recorded."""

    def __init__(self, events) -> None:
        self._events, self.acked = list(events), []

    def noack(self) -> Events:
        return self

    async def events(self):
        for ev in self._events:
            yield ev

    async def ack(self, ev) -> None:
        self.acked.append(ev.message.offset)


async def test_a_job_waiting_aside_to_retry_lets_the_next_event_through_its_lane(board):
    """A lane of one slot: the first request waits 0.3 s to retry without its slot, so the second (behind it
    in the partition) is answered meanwhile; the first then takes a slot back and finishes too."""
    order = []

    async def handler(ev, job):
        if ev.message.offset == 0:
            await job.wait_aside(0.3)
        order.append(ev.message.offset)

    async def no_failure(ev, exc):
        raise AssertionError(repr(exc))

    lane = board.lane("test", limit=1, handler=handler, on_failure=no_failure)
    stream = Events([event(offset=0), event(offset=1)])
    await lane.run(stream)
    while len(stream.acked) < 2:
        await asyncio.sleep(0.01)
    assert order == [1, 0] and sorted(stream.acked) == [0, 1]
    assert lane._slots._value == 1  # every slot given back once, no more


async def test_a_job_cancelled_while_aside_gives_back_no_slot_it_does_not_hold(board):
    """A drain cancels a job waiting to retry: the lane's slot count stays right (no double release)."""
    async def handler(ev, job):
        job.start_call()
        await job.wait_aside(30)

    async def no_failure(ev, exc):
        raise AssertionError(repr(exc))

    lane = board.lane("test", limit=1, handler=handler, on_failure=no_failure)
    await lane.run(Events([event(offset=0)]))
    while board.jobs == 0 or lane._slots._value != 1:  # the job is aside: its slot is free
        await asyncio.sleep(0.01)
    await board.drain({TP0})
    assert board.jobs == 0 and lane._slots._value == 1
class QueueStream(AckedStream):
    """Stands where faust's stream is for Lane.run: events handed over one by one, acks recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue = asyncio.Queue()

    def noack(self) -> QueueStream:
        return self

    async def events(self):
        while True:
            yield await self.queue.get()


async def test_a_paused_lane_starts_no_new_job_lets_those_under_way_finish_and_loses_nothing(board):
    """Paused with one job running: it finishes and is acked; two more events wait unstarted and unacked
    until the lane resumes, then both run."""
    stream, started, release = QueueStream(), [], asyncio.Event()

    async def handler(ev, job):
        started.append(ev.message.offset)
        await release.wait()

    async def no_failure(ev, exc):
        raise AssertionError(exc)

    lane = board.lane("low", limit=4, handler=handler, on_failure=no_failure)
    agent = asyncio.create_task(lane.run(stream))
    stream.queue.put_nowait(event(offset=0))
    while started != [0]:
        await asyncio.sleep(0.01)
    lane.pause()
    assert lane.paused
    for offset in (1, 2):
        stream.queue.put_nowait(event(offset=offset))
    release.set()
    await asyncio.sleep(0.1)
    assert started == [0] and stream.acked == [0] and board.jobs == 0
    lane.resume()
    while stream.acked != [0, 1, 2]:
        await asyncio.sleep(0.01)
    assert started == [0, 1, 2]
    agent.cancel()
