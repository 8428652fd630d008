"""The answer stage's failure path never raises (issue 19, item 3): a dead letter the broker refuses for
good is written bare, an error result that cannot be sent is logged after its letter, and a message that
cannot even be read for its letter is kept as it is on the accepted topic. Fakes at the publisher's edge
(test_stage_decisions'), the real :class:`~llmrouter.runtime.delivery.Delivery` and Answer."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import NotLeaderForPartitionError, TopicAuthorizationFailedError
from structlog.testing import capture_logs

from llmrouter.core.stored import StoredAnswer
from llmrouter.observability.finish import Finisher
from llmrouter.observability.metrics import Metrics
from llmrouter.runtime import writes
from llmrouter.runtime.delivery import Delivery
from llmrouter.wire.codec import Codec
from llmrouter.wire.contract import Request
from llmrouter.wire.envelope import Origin
from tests.unit.test_ledger_spend import Table
from tests.unit.test_stage_decisions import NOW_MS, Cache, OK, Serving, answer

REQUEST = Request(request_id="r1", prompt="hi", received_at_ms=NOW_MS, reply_to="team.replies")
ORIGIN = Origin(topic="llm.requests.normal", partition=1, offset=9, key=b"k", value=b'{"prompt": "hi"}',
                headers=(("traceparent", b"00-abc"),), received_at_ms=NOW_MS)


class Failing:
    """The publisher's edge, with dead letters and results that fail as scripted, and what was written."""

    results_topic = "llm.results"

    def __init__(self, *, letters: list[Exception] = (), results: list[Exception] = ()) -> None:
        self.letter_failures, self.result_failures = list(letters), list(results)
        self.letters: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []

    async def dead_letter(self, **fields: Any) -> None:
        if self.letter_failures:
            raise self.letter_failures.pop(0)
        self.letters.append(fields)

    def encode_result(self, record: dict[str, Any]) -> bytes:
        return json.dumps(record).encode()

    async def send_result(self, request_id: str, data: bytes, *, reply_to: str | None = None,
                          replay: bool = False) -> None:
        if self.result_failures:
            raise self.result_failures.pop(0)
        self.results.append({**json.loads(data), "sent_to": reply_to})


def delivery(publisher: Failing, table: Table | None = None) -> Delivery:
    return Delivery(answered=table if table is not None else Table(name="answered"), publisher=publisher, cache=Cache(),
                    finish=Finisher(Metrics()), codec=Codec(), write_attempts=1, window_s=60.0, now_ms=lambda: NOW_MS)


async def test_a_letter_the_broker_refuses_for_good_is_written_bare_and_nothing_raises():
    publisher = Failing(letters=[ValueError("cannot encode the letter")])
    with capture_logs() as logs:
        await delivery(publisher).last_resort(ORIGIN, REQUEST, code="internal_error", reason="a bug")
    [bare] = publisher.letters
    assert bare["origin"].headers == () and bare["origin"].value == ORIGIN.value and "request_id" not in bare
    assert "a bug; its dead letter was refused: ValueError('cannot encode the letter')" == bare["reason"]
    assert publisher.results == [], "a bare letter has no result: the request_id is not trusted"
    assert not [e for e in logs if e["event"] == "dead_letter_lost"]


async def test_a_retriable_letter_failure_is_tried_again_and_the_error_result_follows(monkeypatch):
    monkeypatch.setattr(writes, "FIRST_BACKOFF_S", 0.0)
    publisher = Failing(letters=[NotLeaderForPartitionError()])
    await delivery(publisher).last_resort(ORIGIN, REQUEST, code="internal_error", reason="a bug")
    [letter] = publisher.letters
    assert letter["request_id"] == "r1" and letter["origin"] == ORIGIN
    assert [r["status"] for r in publisher.results] == ["error"] and publisher.results[0]["request_id"] == "r1"


async def test_the_error_result_is_stored_and_sent_to_the_requests_reply_to():
    """Every final outcome is stored (item 7): a redelivery re-emits the last resort's error, it is not served
    again; the result goes where the request asked."""
    publisher, table = Failing(), Table(name="answered")
    await delivery(publisher, table).last_resort(ORIGIN, REQUEST, code="internal_error", reason="a bug")
    [sent] = publisher.results
    stored = StoredAnswer.from_bytes(table.data[b"r1"])
    assert stored.status == "error" and json.loads(stored.result)["error_message"] == "a bug"
    assert sent["sent_to"] == "team.replies" and sent["error_code"] == "internal_error"


async def test_an_answer_stored_before_the_failure_is_never_overwritten_by_the_error():
    answered = StoredAnswer(result=b'{"status": "ok"}', status="ok", stored_at_ms=NOW_MS).to_bytes()
    publisher, table = Failing(), Table({b"r1": answered}, name="answered")
    await delivery(publisher, table).last_resort(ORIGIN, REQUEST, code="internal_error", reason="a bug")
    assert table.data[b"r1"] == answered and len(publisher.results) == 1


async def test_an_error_result_refused_for_good_is_logged_after_its_letter():
    publisher = Failing(results=[TopicAuthorizationFailedError()])
    with capture_logs() as logs:
        await delivery(publisher).last_resort(ORIGIN, REQUEST, code="internal_error", reason="a bug")
    assert len(publisher.letters) == 1 and publisher.results == []
    assert [e["request_id"] for e in logs if e["event"] == "error_result_lost"] == ["r1"]


async def test_a_bare_letter_refused_too_is_logged_as_lost_with_the_coordinates():
    publisher = Failing(letters=[ValueError("no"), ValueError("no again")])
    with capture_logs() as logs:
        await delivery(publisher).last_resort(ORIGIN, REQUEST, code="internal_error", reason="a bug")
    lost = [e for e in logs if e["event"] == "dead_letter_lost"]
    assert publisher.letters == [] and len(lost) == 1
    assert (lost[0]["topic"], lost[0]["partition"], lost[0]["offset"]) == ("llm.requests.normal", 1, 9)


async def test_a_message_that_cannot_be_read_for_its_letter_is_kept_as_it_is_on_the_accepted_topic():
    """Answer.fail never raises: headers that even normalize_headers cannot read make a bare letter of
    the internal message, its coordinates on the accepted topic."""
    publisher = Failing()
    stage = answer(Serving(OK), delivery(publisher))
    message = SimpleNamespace(topic="accepted.normal", partition=0, offset=3, key=b"r1", value=b"internal",
                              headers=42, generation_id=1)
    with capture_logs() as logs:
        await stage.fail(SimpleNamespace(message=message, value=b"internal", headers=42), RuntimeError("boom"))
    [bare] = publisher.letters
    assert (bare["origin"].topic, bare["origin"].offset, bare["origin"].value) == ("accepted.normal", 3, b"internal")
    assert bare["reason"].startswith("the router failed while answering: boom; reading it for its dead letter")
    assert [e["offset"] for e in logs if e["event"] == "answer_failure_path_failed"] == [3]
