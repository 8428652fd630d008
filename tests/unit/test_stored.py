"""The answered table's compact record."""

from __future__ import annotations

import pytest

from llmrouter.core.stored import StoredAnswer, re_emits


def test_a_stored_answer_round_trips_with_its_result_bytes_untouched():
    """to_bytes/from_bytes keep status, time, delivered flag and the result bytes as they were."""
    answer = StoredAnswer(result=b"\xc3\x01\x00\xffresult", status="rejected", stored_at_ms=1_700_000_000_123)
    again = StoredAnswer.from_bytes(answer.to_bytes())
    assert again == answer and not again.delivered
    assert StoredAnswer.from_bytes(answer.as_delivered().to_bytes()).delivered


def test_the_record_is_eleven_bytes_plus_the_result():
    """Compact: a fixed 11-byte header in front of the encoded result."""
    assert len(StoredAnswer(result=b"x" * 100, status="ok", stored_at_ms=0).to_bytes()) == 111


def test_an_answer_older_than_the_idempotency_window_is_expired():
    """stored 2 h ago with a 1 h window: expired; with a 3 h window: not."""
    answer = StoredAnswer(result=b"r", status="ok", stored_at_ms=0)
    assert answer.expired(now_ms=7_200_000, window_s=3600)
    assert not answer.expired(now_ms=7_200_000, window_s=3 * 3600)


@pytest.mark.parametrize("data", [b"", b"\x01\x00", b"{\"request_id\": \"old-json-record\"}"])
def test_something_else_is_refused_with_the_reason(data):
    """A value that is not a version-1 record raises ValueError saying so."""
    with pytest.raises(ValueError, match="not a stored answer"):
        StoredAnswer.from_bytes(data)


@pytest.mark.parametrize("status", ["ok", "rejected", "error", "timeout"])
def test_every_final_outcome_is_re_emitted_to_a_plain_redelivery(status):
    """A duplicate or a redelivery (no DLQ replay header) gets the stored outcome back, whatever it was."""
    stored = StoredAnswer(result=b"r", status=status, stored_at_ms=5_000)
    assert re_emits(stored, dlq_replay=False, received_at_ms=9_000)


def test_a_dlq_replay_retries_a_stored_error_or_timeout_but_not_its_own_outcome():
    """Replayed from the DLQ after the error was stored: served anew. The replay's own outcome (stored after
    the replay was received) goes back to a redelivery of that replay. An ok answer is never served again."""
    for status in ("error", "timeout"):
        before = StoredAnswer(result=b"r", status=status, stored_at_ms=5_000)
        assert not re_emits(before, dlq_replay=True, received_at_ms=9_000)
        own = StoredAnswer(result=b"r", status=status, stored_at_ms=9_500)
        assert re_emits(own, dlq_replay=True, received_at_ms=9_000)
    assert re_emits(StoredAnswer(result=b"r", status="ok", stored_at_ms=5_000), dlq_replay=True, received_at_ms=9_000)
