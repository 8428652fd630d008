"""The backpressure acted on (llmrouter/runtime/backpressure.py): lanes, consumer hold, metric, log, event.

No Kafka: the consumer is a recorder of holds, the loads are given, the clock is moved."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from llmrouter.dispatch.bulkhead import PriorityBulkhead
from llmrouter.core.backpressure import Load
from llmrouter.observability.metrics import Metrics
from llmrouter.runtime.backpressure import Backpressure, sample_load
from llmrouter.runtime.inflight import InFlight
from llmrouter.config.settings import BackpressureSettings

TOPICS = {p: f"llm.router.accepted.{p}" for p in ("critical", "high", "normal", "low")}


class Consumer:
    """Stands where SafeCommitConsumer is: records the topics held; owns two partitions of each."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    def hold(self, topics: set[str]) -> None:
        self.held = set(topics)

    def held_partitions(self) -> set[TP]:
        return {TP(topic, p) for topic in self.held for p in (0, 1)}


def service(loads: list[Load], clock: list[float], events: list) -> tuple[Backpressure, Consumer, Metrics]:
    consumer, metrics = Consumer(), Metrics()
    board = InFlight(generation=lambda: 1, grace_s=0.1, delivery_timeout_s=0.1)

    async def nothing(*_):
        return None

    lanes = {p: board.lane(f"answer-{p}", limit=2, handler=nothing, on_failure=nothing) for p in TOPICS}

    async def publish(entity, kind, data):
        events.append((entity, kind, data))

    bp = Backpressure(BackpressureSettings(pause_after_s=1.0, resume_after_s=2.0), consumer=lambda: consumer,
                      lanes=lanes, topics=TOPICS, sample=lambda: loads[-1], publish=publish, metrics=metrics,
                      worker="w1", clock=lambda: clock[0])
    return bp, consumer, metrics


async def test_a_pause_holds_the_topic_pauses_the_lane_and_is_told_everywhere_then_a_resume_undoes_it():
    """Normal requests waiting 1 s: low's lane paused, its topic held, gauge 1, an llm.events entry; calm 2 s:
    all undone, and the event says resumed."""
    loads, clock, events = [Load(waiting={"normal": 3})], [0.0], []
    bp, consumer, metrics = service(loads, clock, events)
    for t in (0.0, 0.5, 1.0):
        clock[0] = t
        bp.step()
    await asyncio.sleep(0)
    assert bp._lanes["low"].paused and not bp._lanes["normal"].paused
    assert consumer.held == {TOPICS["low"]}
    assert metrics.backpressure_paused.labels("low")._value.get() == 1
    assert metrics.backpressure_waiting.labels("normal")._value.get() == 3
    assert [(e[0], e[1]) for e in events] == [("backpressure:low", "paused")]
    assert events[0][2]["partitions"] == f"{TOPICS['low']}[0],{TOPICS['low']}[1]"
    state = bp.describe()
    assert [p["priority"] for p in state["paused"]] == ["low"] and state["waiting"]["normal"] == 3

    loads.append(Load(waiting={}))
    for t in (1.5, 2.5, 3.5):
        clock[0] = t
        bp.step()
    await asyncio.sleep(0)
    assert not bp._lanes["low"].paused and consumer.held == set()
    assert metrics.backpressure_paused.labels("low")._value.get() == 0
    assert [(e[0], e[1]) for e in events] == [("backpressure:low", "paused"), ("backpressure:low", "resumed")]
    assert [h["kind"] for h in bp.describe()["history"]] == ["paused", "resumed"]


async def test_a_new_assignment_keeps_what_is_paused_held():
    """After a rebalance the listener holds the paused topics again (a no-op for the by-topic hold, kept
    explicit); a rebalance's empty assignment changes nothing."""
    loads, clock, events = [Load(waiting={"critical": 1})], [0.0], []
    bp, consumer, _ = service(loads, clock, events)
    for t in (0.0, 1.0):
        clock[0] = t
        bp.step()
    consumer.held = set()  # as if forgotten
    bp.on_assignment(set())
    assert consumer.held == set()
    bp.on_assignment({TP(TOPICS["low"], 0)})
    assert consumer.held == {TOPICS["low"]}


async def test_disabled_it_never_samples():
    """backpressure.enabled false: the watch returns at once; nothing is ever paused."""
    bp, consumer, _ = service([Load(waiting={"critical": 9})], [0.0], [])
    bp.settings = BackpressureSettings(enabled=False)
    await Backpressure._watch.fun(bp)  # the task's body, run here instead of by the started service
    assert consumer.held == set() and not any(lane.paused for lane in bp._lanes.values())


async def test_the_sample_counts_bulkhead_waiters_by_priority_and_sees_a_chain_out_of_tokens():
    """Two providers' bulkheads with waiters of priority 0, 2, 2, 3; the limited one out of tokens, the other
    without a limit: waiting {critical: 1, normal: 2, low: 1}, chain not out; the other unavailable: out."""
    a, b = PriorityBulkhead(1), PriorityBulkhead(1)
    hold = asyncio.Event()

    async def call(bulkhead, priority):
        async with bulkhead.slot(priority):
            await hold.wait()

    tasks = [asyncio.create_task(call(a, 3)), asyncio.create_task(call(b, 3))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(call(bh, p)) for bh, p in ((a, 0), (a, 2), (b, 2), (b, 3))]
    await asyncio.sleep(0)
    status = {"limited": {"available": True}, "free": {"available": True}}
    registry = SimpleNamespace(bulkheads=lambda: {"limited": a, "free": b}, chain=lambda: ["limited", "free"],
                               status=lambda: status)
    limits = SimpleNamespace(snapshot=lambda: {"limited": {"tokens": 0.4, "limited_for_s": 0.0}},
                             held_for=lambda name: 0.0)
    load = sample_load(registry, limits)
    assert load.waiting == {"critical": 1, "normal": 2, "low": 1} and not load.tokens_out
    status["free"] = {"available": False}
    assert sample_load(registry, limits).tokens_out
    hold.set()
    await asyncio.gather(*tasks)


async def test_a_failing_sample_resumes_everything_rather_than_leave_a_priority_paused_for_good():
    """Low paused, then the sampler raises: the watch logs it and lets every priority flow again."""
    loads, clock, events = [Load(waiting={"normal": 2})], [0.0], []
    bp, consumer, metrics = service(loads, clock, events)
    for t in (0.0, 1.0):
        clock[0] = t
        bp.step()
    assert consumer.held == {TOPICS["low"]}

    def broken():
        raise RuntimeError("a bug in the sampler")

    bp._sample = broken
    watch = asyncio.create_task(Backpressure._watch.fun(bp))
    while consumer.held:
        await asyncio.sleep(0.01)
    watch.cancel()
    assert not bp._lanes["low"].paused and bp.decision.paused == []
    assert metrics.backpressure_paused.labels("low")._value.get() == 0
