"""Intake on poison and on its own failures, without a broker (the fakes of test_stage_decisions at the
seam): every message ends in one outcome and the failure path never raises; a sender's reply_to is
checked before a recent answer is re-emitted to it."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.tiers import Hit
from llmrouter.observability.metrics import Metrics
from llmrouter.runtime import writes
from llmrouter.wire.envelope import Origin
from tests.unit.test_stage_decisions import NOW_MS, Cache, Job, Publisher, intake

HUGE_INT = b'{"request_id": "r1", "prompt": "p", "max_tokens": ' + b"9" * 5_000 + b"}"


class Recording(Publisher):
    """The publisher's edge, with where each result went and dead letters that fail as scripted."""

    def __init__(self, letter_failures: list[Exception] | None = None) -> None:
        super().__init__()
        self.reply_tos: list[str | None] = []
        self.letter_failures = list(letter_failures or [])
        self.letter_attempts = 0

    async def result(self, record: dict[str, Any], *, reply_to: str | None = None) -> None:
        self.reply_tos.append(reply_to)
        await super().result(record, reply_to=reply_to)

    async def send_result(self, request_id: str, data: bytes, *, reply_to: str | None = None,
                          replay: bool = False) -> None:
        self.reply_tos.append(reply_to)
        await super().send_result(request_id, data, reply_to=reply_to, replay=replay)

    async def dead_letter(self, **fields: Any) -> None:
        self.letter_attempts += 1
        if self.letter_failures:
            raise self.letter_failures.pop(0)
        await super().dead_letter(**fields)


class BrokenDirectory:
    """A topic directory that fails: what makes the dead-letter path itself raise here."""

    async def exists(self, topic: str) -> bool:
        raise RuntimeError("metadata exploded")


def event(value: bytes) -> SimpleNamespace:
    message = SimpleNamespace(topic="llm.requests.normal", partition=0, offset=7, key=b"k", value=value,
                              headers=[("traceparent", b"junk")])
    return SimpleNamespace(message=message)


def origin(value: bytes) -> Origin:
    return Origin(topic="llm.requests.normal", partition=0, offset=7, key=None, value=value, received_at_ms=NOW_MS)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    """Retried writes go again at once (the backoff's length is not what these tests check)."""
    monkeypatch.setattr(writes, "FIRST_BACKOFF_S", 0.0)


def letters(publisher: Publisher) -> list[dict[str, Any]]:
    return [fields for kind, fields in publisher.sent if kind == "dead_letter"]


async def test_a_5000_digit_integer_is_one_undecodable_dead_letter_not_an_exception():
    """It raised a plain ValueError out of the handler (and again out of the failure path)."""
    publisher = Recording()
    await intake(publisher, Cache(), Metrics()).handle(origin(HUGE_INT), Job())
    (letter,) = letters(publisher)
    assert letter["code"] == "undecodable" and "4300 digits" in letter["reason"]
    assert letter["origin"].value == HUGE_INT


async def test_the_failure_path_on_a_poison_writes_its_letter_and_returns():
    """The lane's last resort, given the 5,000-digit value: one dead letter, and it does not raise."""
    publisher = Recording()
    await intake(publisher, Cache(), Metrics()).fail(event(HUGE_INT), RuntimeError("boom"))
    (letter,) = letters(publisher)
    assert letter["origin"].value == HUGE_INT and letter["reason"] == "intake failed: boom"


async def test_when_the_failure_path_itself_fails_a_bare_dead_letter_keeps_the_bytes():
    """The error result's reply_to check raises: the letter was written, so no second one; a failure
    before the letter (its write refused for good) gives the bare letter: original bytes, no headers."""
    value = json.dumps({"request_id": "r1", "prompt": None, "reply_to": "llm.results"}).encode()
    publisher = Recording()
    stage = intake(publisher, Cache(), Metrics())
    stage._directory = BrokenDirectory()
    await stage.fail(event(value), RuntimeError("boom"))
    assert len(letters(publisher)) == 1

    publisher = Recording(letter_failures=[ValueError("cannot encode the letter")])
    await intake(publisher, Cache(), Metrics()).fail(event(value), RuntimeError("boom"))
    (bare,) = letters(publisher)
    assert bare["origin"].value == value and bare["origin"].key == b"k" and bare["origin"].headers == ()
    assert "request_id" not in bare and "cannot encode the letter" in bare["reason"]


async def test_a_letter_refused_for_good_is_logged_as_lost_and_given_up():
    """Too large for the broker, both letters: given up after one try each (not tried for ever, which
    held the partition's commit), and logged with the message's coordinates."""
    too_large = MessageSizeTooLargeError()
    publisher = Recording(letter_failures=[too_large, too_large])
    with capture_logs() as logs:
        await intake(publisher, Cache(), Metrics()).fail(event(HUGE_INT), RuntimeError("boom"))
    assert publisher.letter_attempts == 2 and letters(publisher) == []
    (lost,) = [line for line in logs if line["event"] == "dead_letter_lost"]
    assert (lost["topic"], lost["partition"], lost["offset"], lost["value_bytes"]) == (
        "llm.requests.normal", 0, 7, len(HUGE_INT))


async def test_a_retriable_letter_failure_is_tried_until_written():
    """The broker away for a while: the same letter again until it is written, once."""
    publisher = Recording(letter_failures=[KafkaConnectionError(), KafkaConnectionError()])
    await intake(publisher, Cache(), Metrics()).fail(event(HUGE_INT), RuntimeError("boom"))
    assert publisher.letter_attempts == 3 and len(letters(publisher)) == 1


async def test_a_recent_answer_is_not_re_emitted_to_a_reply_to_that_is_not_allowed():
    """Answered from the cache, then sent again with reply_to naming the flags topic: refused as
    reply_to_not_allowed, to llm.results, and nothing goes to the flags topic."""
    answer = CachedAnswer(text="cached", provider="local", model="m", finish_reason="stop", prompt_tokens=1,
                          completion_tokens=2, cost_usd=0.1, stored_at_ms=0, expires_at_ms=NOW_MS * 2,
                          request_id="earlier")
    publisher = Recording()
    stage = intake(publisher, Cache(Hit(level="l1", answer=answer)), Metrics())
    await stage.handle(origin(json.dumps({"request_id": "r1", "prompt": "hello"}).encode()), Job())
    resent = json.dumps({"request_id": "r1", "prompt": "hello", "reply_to": "llm.router.flags"}).encode()
    await stage.handle(origin(resent), Job())
    assert [(kind, record.get("error_code")) for kind, record in publisher.sent] == [
        ("result", None), ("result", "reply_to_not_allowed")]
    assert publisher.reply_tos == [None, None]


async def test_a_lone_surrogate_user_id_is_an_invalid_request_before_anything_is_forwarded():
    """It raised in the ledger's settle after the provider was paid; now: a dead letter and an error
    result naming the field, nothing forwarded."""
    publisher = Recording()
    value = b'{"request_id": "r1", "prompt": "p", "user_id": "\\ud800"}'
    await intake(publisher, Cache(), Metrics()).handle(origin(value), Job())
    assert publisher.kinds() == ["dead_letter", "result"]
    assert publisher.sent[1][1]["error_code"] == "invalid_request"
    assert publisher.sent[1][1]["error_message"].startswith("user_id is not valid Unicode text")
