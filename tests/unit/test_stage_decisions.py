"""The decisions of intake and the answer stage, without a broker: small fakes of our own edges (the publisher,
the cache, the serving step, the delivery) stand at the seam; the integration tests go through Kafka."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from llmrouter.agents.answer import Answer
from llmrouter.agents.intake import Intake
from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.policy import CacheDecision
from llmrouter.cache.tiers import Hit
from llmrouter.config.settings import Settings
from llmrouter.core.stored import StoredAnswer
from llmrouter.dispatch.serving import DeadLetter, QuotaGate, Served
from llmrouter.observability.finish import Finisher
from llmrouter.observability.metrics import Metrics
from llmrouter.observability.tracing import Tracing
from llmrouter.wire.codec import Codec
from llmrouter.wire.contract import PRIORITIES, Request, result_record
from llmrouter.wire.envelope import Origin

NOW_MS = 1_000_000


class Publisher:
    """Our publisher's edge, writing down what would have been sent."""

    results_topic = "llm.results"

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def encode_result(self, record: dict[str, Any]) -> bytes:
        return json.dumps(record).encode()

    async def result(self, record: dict[str, Any], *, reply_to: str | None = None) -> None:
        self.sent.append(("result", record))

    async def send_result(self, request_id: str, data: bytes, *, reply_to: str | None = None,
                          replay: bool = False) -> None:
        self.sent.append(("replay" if replay else "result", json.loads(data)))

    async def dead_letter(self, **fields: Any) -> None:
        self.sent.append(("dead_letter", fields))

    async def forward(self, topic: str, origin: Origin, request_id: str) -> None:
        self.sent.append(("forward", topic))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent]


class Job:
    """The in-flight job's edge: the marks a handler sets."""

    def __init__(self) -> None:
        self.marks: list[str] = []

    def start_delivery(self) -> None:
        self.marks.append("delivery")

    def start_call(self) -> None:
        self.marks.append("call")

    async def wait_aside(self, seconds: float) -> None:
        self.marks.append("wait")


class Cache:
    """The response cache's edge: reads allowed, ``hit`` the answer a lookup finds."""

    def __init__(self, hit: Hit | None = None) -> None:
        self.hit = hit

    def decide(self, request: Request) -> CacheDecision:
        return CacheDecision(read=True, write=True, reason="test")

    async def lookup(self, request: Request, raw: bytes) -> Hit | None:
        return self.hit


def topics() -> SimpleNamespace:
    named = lambda name: SimpleNamespace(get_topic_name=lambda: name)  # noqa: E731
    return SimpleNamespace(requests={p: named(f"llm.requests.{p}") for p in PRIORITIES},
                           accepted={p: named(f"accepted.{p}") for p in PRIORITIES})


def intake(publisher: Publisher, cache: Cache, metrics: Metrics) -> Intake:
    return Intake(settings=Settings(), topics=topics(), codec=Codec(), publisher=publisher, directory=None,
                  cache=cache, finish=Finisher(metrics), tracing=Tracing.build())


def upstream(**fields: Any) -> Origin:
    value = json.dumps({"request_id": "r1", "prompt": "hello", **fields}).encode()
    return Origin(topic="llm.requests.normal", partition=0, offset=7, key=None, value=value, received_at_ms=NOW_MS)


def results(metrics: Metrics, status: str) -> float:
    return sum(s.value for m in metrics.registry.collect() if m.name == "llmrouter_request"
               for s in m.samples if s.name == "llmrouter_request_total" and s.labels["status"] == status)


async def test_intake_dead_letters_an_invalid_request_and_tells_the_requester():
    """No prompt: the DLQ gets it, an error result goes out, and it is counted as a result."""
    publisher, metrics = Publisher(), Metrics()
    await intake(publisher, Cache(), metrics).handle(upstream(prompt=None), Job())
    assert publisher.kinds() == ["dead_letter", "result"]
    assert publisher.sent[1][1]["status"] == "error" and "total_latency_ms" in publisher.sent[1][1]
    assert results(metrics, "error") == 1


async def test_intake_refuses_a_request_over_a_size_limit_without_forwarding_it():
    """A prompt over limits.max_prompt_chars: a rejected result with its code, nothing forwarded."""
    publisher, metrics = Publisher(), Metrics()
    await intake(publisher, Cache(), metrics).handle(upstream(prompt="x" * 40_000), Job())
    assert [(k, r["error_code"]) for k, r in publisher.sent] == [("result", "prompt_too_long")]
    assert results(metrics, "rejected") == 1


async def test_intake_answers_a_cache_hit_itself():
    """A hit for another request's answer: an ok result from the cache (cost 0), nothing forwarded."""
    answer = CachedAnswer(text="cached", provider="local", model="m", finish_reason="stop", prompt_tokens=1,
                          completion_tokens=2, cost_usd=0.1, stored_at_ms=0, expires_at_ms=NOW_MS * 2,
                          request_id="earlier")
    publisher, metrics = Publisher(), Metrics()
    await intake(publisher, Cache(Hit(level="l1", answer=answer)), metrics).handle(upstream(), Job())
    (kind, record), = publisher.sent
    assert (kind, record["route"], record["cache_level"], record["cost_usd"]) == ("result", "cache", "l1", 0.0)


async def test_intake_forwards_a_good_request_it_cannot_answer():
    """A cache miss: forwarded to its priority's accepted topic, no result yet, nothing counted."""
    publisher, metrics, job = Publisher(), Metrics(), Job()
    await intake(publisher, Cache(), metrics).handle(upstream(), job)
    assert publisher.sent == [("forward", "accepted.normal")] and job.marks == ["delivery"]
    assert results(metrics, "ok") == 0


class Serving:
    def __init__(self, served: Served) -> None:
        self.served, self.asked = served, 0

    async def serve(self, request: Request, before_call: Any, spend: Any, wait: Any = None) -> Served:
        self.asked += 1
        return self.served


class Delivery:
    def __init__(self, stored: StoredAnswer | None = None) -> None:
        self._stored, self.done = stored, []

    def stored(self, request_id: str) -> StoredAnswer | None:
        return self._stored

    async def re_emit(self, request: Request, stored: StoredAnswer) -> None:
        self.done.append(("re_emit", stored.status))

    async def deliver(self, request: Request, origin: Origin, record: dict, dead_letter: DeadLetter | None) -> None:
        self.done.append(("deliver", record["status"], record.get("error_code"), dead_letter))


class Quotas:
    def __init__(self, reason: str | None) -> None:
        self.reason = reason

    def check(self, user_id: str | None, priority: str, now_s: float) -> str | None:
        return self.reason


def answer(serving: Serving, delivery: Delivery, *, over_quota: str | None = None) -> Answer:
    ledger = SimpleNamespace(spend=lambda **_: "spend")
    gate = QuotaGate(Quotas(over_quota), counted=lambda priority: None, clock=lambda: 0.0)
    return Answer(codec=Codec(), priority_of={"accepted.normal": "normal"}, serving=serving, delivery=delivery,
                  ledger=ledger, quota=gate, tracing=Tracing.build(), now_ms=lambda: NOW_MS)


REQUEST = Request(request_id="r1", prompt="hi", received_at_ms=NOW_MS)
OK = Served(result_record(REQUEST, status="ok", now_ms=NOW_MS, provider="local", route="local"))


async def test_answer_re_emits_a_stored_answer_and_serves_nothing():
    """A request answered before: its stored result again, no provider asked."""
    serving = Serving(OK)
    delivery = Delivery(StoredAnswer(result=b"{}", status="ok", stored_at_ms=NOW_MS))
    await answer(serving, delivery).handle(REQUEST, upstream(), Job(), partition=0)
    assert delivery.done == [("re_emit", "ok")] and serving.asked == 0


async def test_answer_refuses_a_user_over_quota_before_any_provider():
    """Over quota: a rejected quota_exceeded result is delivered (and stored), no provider asked."""
    serving, delivery = Serving(OK), Delivery()
    await answer(serving, delivery, over_quota="3 requests a minute").handle(REQUEST, upstream(), Job(), partition=0)
    assert delivery.done == [("deliver", "rejected", "quota_exceeded", None)] and serving.asked == 0


@pytest.mark.parametrize("served", [OK, Served(OK.record | {"status": "error", "error_code": "x"}, DeadLetter("x", "y"))])
async def test_answer_serves_anything_else_and_delivers_what_serving_returned(served: Served):
    """No stored answer, within quota: served once, and the record with its dead letter goes to delivery."""
    serving, delivery, job = Serving(served), Delivery(), Job()
    await answer(serving, delivery).handle(REQUEST, upstream(), job, partition=0)
    assert serving.asked == 1 and job.marks == ["delivery"]
    assert delivery.done == [("deliver", served.record["status"], served.record.get("error_code"),
                              served.dead_letter)]


async def test_answer_serves_a_dlq_replay_of_a_stored_error_again():
    """A stored error re-emitted to a duplicate, but served anew for ``llmrouter dlq replay`` (its header)."""
    error = StoredAnswer(result=b"{}", status="error", stored_at_ms=NOW_MS - 1)
    serving, delivery = Serving(OK), Delivery(error)
    await answer(serving, delivery).handle(REQUEST, upstream(), Job(), partition=0)
    assert delivery.done == [("re_emit", "error")] and serving.asked == 0
    replayed = replace(upstream(), headers=(("llmrouter-dlq-replay", b"0:12"),))
    await answer(serving, delivery).handle(REQUEST, replayed, Job(), partition=0)
    assert delivery.done[1][:2] == ("deliver", "ok") and serving.asked == 1
