"""Tests of the pure Server-Sent-Events parser and the Retry-After reader."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

from llmrouter.providers.sse import SseEvent, SseParser, parse_retry_after

OPENAI_STREAM = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"lo \xc3\xa9t\xc3\xa9"}}]}\n\n'
    b"data: [DONE]\n\n"
)
ANTHROPIC_STREAM = (
    b"event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n"
    b": keep-alive comment\r\n"
    b"event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n"
    b"event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n"
)


def parse_all(stream: bytes, chunk_size: int) -> list[SseEvent]:
    """Feed ``stream`` in chunks of ``chunk_size`` bytes and collect every event."""
    parser = SseParser()
    events: list[SseEvent] = []
    for i in range(0, len(stream), chunk_size):
        events += parser.feed(stream[i:i + chunk_size])
    assert not parser.pending
    return events


def test_lf_stream_gives_one_message_event_per_blank_line() -> None:
    """LF-separated ``data:`` lines give unnamed (``message``) events with the data as sent, UTF-8 decoded."""
    events = parse_all(OPENAI_STREAM, len(OPENAI_STREAM))
    assert [e.event for e in events] == ["message"] * 3
    assert events[1].data == '{"choices":[{"delta":{"content":"lo été"}}]}'
    assert events[2].data == "[DONE]"


def test_crlf_stream_with_named_events_and_comments() -> None:
    """CRLF lines, ``event:`` names and ``:`` comments: the names are kept, the comment is dropped."""
    events = parse_all(ANTHROPIC_STREAM, len(ANTHROPIC_STREAM))
    assert [e.event for e in events] == ["message_start", "ping", "message_stop"]
    assert events[0].data == '{"type":"message_start"}'


@pytest.mark.parametrize("stream", [OPENAI_STREAM, ANTHROPIC_STREAM, OPENAI_STREAM.replace(b"\n", b"\r")],
                         ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 64])
def test_chunk_boundaries_anywhere_give_the_same_events(stream: bytes, chunk_size: int) -> None:
    """Splitting the bytes anywhere (inside a line, a CRLF pair, a UTF-8 character) changes nothing."""
    assert parse_all(stream, chunk_size) == parse_all(stream, len(stream))


def test_multi_line_data_is_joined_with_newlines() -> None:
    """Several ``data`` lines of one event are joined with ``\\n``; a field without a space after the colon works."""
    events = SseParser().feed(b"data: first\ndata:second\ndata\n\n")
    assert events == [SseEvent(data="first\nsecond\n")]


def test_id_and_retry_fields_are_kept_and_unknown_fields_ignored() -> None:
    """``id`` and a numeric ``retry`` go with the event; unknown fields and a bad retry are ignored."""
    events = SseParser().feed(b"id: 7\nretry: 1500\nfoo: bar\ndata: x\n\nretry: soon\ndata: y\n\n")
    assert events[0] == SseEvent(data="x", id="7", retry_ms=1500)
    assert events[1] == SseEvent(data="y", id="7", retry_ms=1500)


def test_an_event_without_data_is_not_dispatched_and_resets_its_name() -> None:
    """A blank line after only ``event:`` dispatches nothing, and the name does not leak into the next event."""
    events = SseParser().feed(b"event: ping\n\ndata: z\n\n")
    assert events == [SseEvent(data="z")]


def test_a_half_received_event_is_pending_not_dispatched() -> None:
    """An event without its blank line (a cut stream) is held back and reported by ``pending``."""
    parser = SseParser()
    assert parser.feed(b"data: whole\n\ndata: half") == [SseEvent(data="whole")]
    assert parser.pending
    assert parser.feed(b"\n") == [] and parser.pending


def test_a_leading_byte_order_mark_is_dropped_even_when_split() -> None:
    """A UTF-8 BOM opening the stream, arriving byte by byte, does not end up in the first field name."""
    parser = SseParser()
    events = [e for byte in b"\xef\xbb\xbfdata: a\n\n" for e in parser.feed(bytes([byte]))]
    assert events == [SseEvent(data="a")]


def test_cr_then_lf_in_the_next_chunk_is_one_line_end() -> None:
    """A CR ending one chunk and an LF starting the next count as one CRLF, not two line ends."""
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SseEvent(data="a\nb")]


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0),
    (" 1.5 ", 1.5),
    ("0", 0.0),
    ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
    ("Wed, 01 May 2024 11:59:00 GMT", 0.0),
    ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),
    (None, None),
    ("", None),
    ("-5", None),
    ("soon", None),
    ("nan", None),
    ("inf", None),
])
def test_retry_after_reads_delta_seconds_and_http_dates(value: str | None, expected: float | None) -> None:
    """Delta-seconds are taken as is; an HTTP-date counts from ``now`` (past = 0); junk and negatives give None."""
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_http_date_round_trips_from_the_formatter() -> None:
    """A date written by the standard HTTP-date formatter 90 s ahead reads as 90 s."""
    when = datetime.fromtimestamp(NOW + 90, tz=timezone.utc)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == 90.0
