"""One load test run through Kafka: produce the workload on its schedule, read the answers, drain.

The results topic is read without a consumer group: every partition is
assigned and sought to its end *before* the first request is sent, so every
answer to this run is seen and nothing older is. Answers are matched to
requests by request_id (the results' key, by the contract; values are
decoded only for keys of this run). The producer batches (``linger_ms``,
acks from every in-sync replica, idempotent), as an upstream system under
load would, and takes the request topics' partitions in turn.

After the last send the run waits up to ``drain_s`` for the outstanding
answers, then reads the results topic to the end it has at that moment, so
a duplicate written beside its original is counted too.

One event loop runs the sender, the reader and the progress line; the
sender yields to the others at least every :data:`YIELD_EVERY` sends. The
sender's lateness against the schedule is measured (``send_lag``) so a
saturated load generator cannot pass for a slow router.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from llmrouter.errors import RouterError
from llmrouter.loadtest.display import Progress
from llmrouter.loadtest.schedule import Bounds, ClosedLoop, OpenLoop, Schedule
from llmrouter.loadtest.stats import Answer, Tally
from llmrouter.loadtest.workload import Workload, seq_of

YIELD_EVERY = 32  # sends in a row before the sender lets the reader run
READ_TO_END_S = 10.0  # the most the final read to the end of the results topic may take
TOPIC_WAIT_S = 10.0

ReadAnswer = Callable[[bytes, bytes, Any], tuple[str, Answer]]  # (key, value, headers) -> (request_id, answer)


@dataclass(frozen=True)
class Target:
    """Where one run's requests go (a topic per priority) and where their answers are read."""

    label: str
    request_topics: Mapping[str, str]
    results_topic: str
    read_answer: ReadAnswer


@dataclass(frozen=True)
class RunOptions:
    drain_s: float = 30.0
    linger_ms: float = 2.0
    progress_every_s: float = 1.0


async def topic_partitions(producer: AIOKafkaProducer, topic: str) -> list[int]:
    """The partitions of ``topic``; a RouterError naming it when it is not there."""
    try:
        return sorted(await asyncio.wait_for(producer.partitions_for(topic), timeout=TOPIC_WAIT_S))
    except (TimeoutError, KafkaError) as exc:
        raise RouterError(f"topic {topic} is not there: start a worker (or run `llmrouter topics create`) "
                          f"with the same settings first") from exc


async def run_load(
    bootstrap: str, target: Target, workload: Workload, schedule: Schedule, bounds: Bounds, *,
    encode: Callable[[dict[str, Any]], bytes], options: RunOptions = RunOptions(),
    on_start: Callable[[], None] | None = None, on_progress: Callable[[Progress], None] | None = None,
) -> Tally:
    """Run ``workload`` against ``target`` on ``schedule`` until ``bounds``, drain, and return what was seen.

    ``on_start`` is called just before the first send (to sample CPU), ``on_progress`` every
    ``options.progress_every_s`` seconds.
    """
    run = _Run(target, workload, Tally(target.label, from_due=isinstance(schedule, OpenLoop)), encode)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=options.linger_ms)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tasks: list[asyncio.Task] = []
    await producer.start()
    try:
        await consumer.start()
        partitions = [TopicPartition(target.results_topic, p)
                      for p in await topic_partitions(producer, target.results_topic)]
        for topic in set(target.request_topics.values()):
            run.partitions[topic] = len(await topic_partitions(producer, topic))
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, before anything is sent
            await consumer.position(tp)
        reader = asyncio.create_task(run.read(consumer), name="loadtest-reader")
        tasks.append(reader)
        if on_progress is not None:
            tasks.append(asyncio.create_task(
                run.report(on_progress, options.progress_every_s, schedule.expected_count(bounds)),
                name="loadtest-progress"))
        if on_start is not None:
            on_start()
        run.start()
        sending = run.send_open(producer, schedule, bounds) if isinstance(schedule, OpenLoop) else (
            run.send_closed(producer, schedule, bounds))
        sender = asyncio.create_task(sending, name="loadtest-sender")
        tasks.append(sender)
        await asyncio.wait([sender, reader], return_when=asyncio.FIRST_COMPLETED)
        _raise_if_done(reader)  # a reader that failed stops the run at once, not after the last send
        await sender
        run.phase = "draining"
        await producer.flush()
        await run.drain(options.drain_s, reader)
        await run.read_to_end(consumer, partitions, reader)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        await consumer.stop()
    return run.tally


class _Run:
    """The state one run's sender, reader and progress task share."""

    def __init__(self, target: Target, workload: Workload, tally: Tally,
                 encode: Callable[[dict[str, Any]], bytes]) -> None:
        self.target = target
        self.workload = workload
        self.tally = tally
        self.encode = encode
        self.phase = "sending"
        self.t0 = 0.0
        self.epoch0 = 0.0
        self.outstanding: dict[int, float] = {}  # closed loop: seq -> sent at, until answered or refused
        self.partitions: dict[str, int] = {}  # request topic -> its partition count
        self.answer_came = asyncio.Event()
        self._key_prefix = f"{workload.run_id}-".encode()

    def start(self) -> None:
        self.t0, self.epoch0 = time.monotonic(), time.time()

    async def send_open(self, producer: AIOKafkaProducer, schedule: OpenLoop, bounds: Bounds) -> None:
        """Send each request at its due time (at once when already late), counting from ``t0``."""
        for n, due in enumerate(schedule.due_times(bounds)):
            delay = self.t0 + due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            await self.send_one(producer, self.t0 + due)

    async def send_closed(self, producer: AIOKafkaProducer, schedule: ClosedLoop, bounds: Bounds) -> None:
        """Keep ``concurrency`` requests outstanding; send the next one when an answer frees a slot."""
        while True:
            now = time.monotonic()
            if not bounds.allows(self.tally.sent, now - self.t0):
                return
            room = schedule.room(list(self.outstanding.values()), now)
            if room == 0:
                self.answer_came.clear()
                try:
                    await asyncio.wait_for(self.answer_came.wait(), timeout=0.1)
                except TimeoutError:
                    pass  # a slot may have timed out (give_up_s): look again
                continue
            for _ in range(room):
                if not bounds.allows(self.tally.sent, time.monotonic() - self.t0):
                    return
                await self.send_one(producer, None)
            await asyncio.sleep(0)

    async def send_one(self, producer: AIOKafkaProducer, due_s: float | None) -> None:
        """Produce the workload's next request; ``due_s`` None (closed loop) means due now, and the
        request holds a slot until it is answered."""
        planned = self.workload.next()
        sent_s = time.monotonic()
        due = sent_s if due_s is None else due_s
        value = self.encode({**planned.fields, "created_at_ms": int((self.epoch0 + due - self.t0) * 1000)})
        self.tally.record_send(planned.seq, planned.priority, due_s=due, sent_s=sent_s)
        if due_s is None:
            self.outstanding[planned.seq] = sent_s
        topic = self.target.request_topics[planned.priority]
        try:  # partitions taken in turn: even spread, and no key hashing on the sender's critical path
            future = await producer.send(topic, value, key=planned.request_id.encode(),
                                         partition=planned.seq % self.partitions[topic])
        except KafkaError as exc:
            self._refused(planned.seq, exc)
        else:
            future.add_done_callback(partial(self._delivered, planned.seq))

    def _delivered(self, seq: int, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._refused(seq, future.exception())
        elif not future.cancelled():
            self.tally.record_acked(seq, time.monotonic())

    def _refused(self, seq: int, exc: BaseException) -> None:
        self.tally.record_refused(seq, type(exc).__name__)
        self.outstanding.pop(seq, None)
        self.answer_came.set()

    async def read(self, consumer: AIOKafkaConsumer) -> None:
        """Take in every answer to this run as it arrives, stamped with the time the batch came."""
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for messages in batches.values():
                for message in messages:
                    self._take(message, now)

    def _take(self, message: Any, now: float) -> None:
        if message.key is not None and not message.key.startswith(self._key_prefix):
            return  # another run's answer, or another requester's (a result without a key is decoded to see)
        rid, answer = self.target.read_answer(message.key, message.value, message.headers)
        seq = seq_of(self.workload.run_id, rid)
        if seq is None:
            if message.key is not None:  # keyed as one of ours, yet no request of this run
                self.tally.strays += 1
            return
        if self.tally.record_result(seq, now, answer):
            self.outstanding.pop(seq, None)
            self.answer_came.set()

    async def drain(self, drain_s: float, reader: asyncio.Task) -> None:
        """Wait until every request sent is answered (or refused), at most ``drain_s`` after the last send."""
        deadline = (self.tally.last_sent_s or time.monotonic()) + drain_s
        while self.tally.outstanding > 0 and time.monotonic() < deadline:
            _raise_if_done(reader)
            self.answer_came.clear()
            try:
                await asyncio.wait_for(self.answer_came.wait(), timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            except TimeoutError:
                pass

    async def read_to_end(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                          reader: asyncio.Task) -> None:
        """Let the reader reach the end the results topic has now (to count late duplicates)."""
        end = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + READ_TO_END_S
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            _raise_if_done(reader)
            if time.monotonic() > deadline:
                raise RouterError(f"could not read {self.target.results_topic} to its end within {READ_TO_END_S:g}s")
            await asyncio.sleep(0.05)

    async def report(self, on_progress: Callable[[Progress], None], every_s: float, expected: int | None) -> None:
        """Call ``on_progress`` every ``every_s`` seconds with a look at the run."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(every_s)
            now = time.monotonic()
            recent = self.tally.take_recent()
            on_progress(Progress(
                label=self.target.label, phase=self.phase, elapsed_s=now - self.t0, sent=self.tally.sent,
                expected=expected, answered=self.tally.answered, interval_s=now - last, recent_answers=len(recent),
                recent_p95_ms=float(np.percentile(recent, 95)) * 1000.0 if recent else None,
                p95_ms=self.tally.p95_so_far_ms()))
            last = now


def _raise_if_done(reader: asyncio.Task) -> None:
    """The reader never ends by itself: if it did, it failed, and the run stops with its error."""
    if reader.done():
        reader.result()
        raise RouterError("the results reader stopped")
