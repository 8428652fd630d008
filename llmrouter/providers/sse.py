"""Server-Sent Events, read incrementally, and the ``Retry-After`` header.

Pure: no I/O, no clock. :class:`SseParser` is fed the body of a
``text/event-stream`` response in chunks of any size (a chunk may end in the
middle of a line, of a CRLF pair or of a UTF-8 character) and returns the
events completed so far, following the WHATWG event-stream rules:

- lines end with CRLF, LF or CR;
- a line starting with ``:`` is a comment and is ignored;
- ``field: value`` (one space after the colon is dropped) sets ``event``,
  appends to ``data`` (several ``data`` lines are joined with ``\\n``),
  sets ``id`` or ``retry``; unknown fields are ignored;
- a UTF-8 byte order mark opening the stream is dropped;
- a blank line dispatches the event; an event without data is not
  dispatched; a half-received event at the end of the stream is discarded
  (:attr:`SseParser.pending` says whether there was one).

:func:`parse_retry_after` reads ``Retry-After`` (RFC 9110): delta-seconds or
an HTTP-date, relative to a ``now`` the caller passes in.
"""

from __future__ import annotations

import email.utils
import math
import re
from dataclasses import dataclass
from datetime import timezone

__all__ = ["SseEvent", "SseParser", "parse_retry_after"]

_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, kw_only=True)
class SseEvent:
    """One dispatched event: its type (``message`` unless named), its data, its id if any."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry_ms: int | None = None


class SseParser:
    """Turns chunks of an event stream into :class:`SseEvent` values as they complete."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip_lf = False  # the last chunk ended in CR: a leading LF of the next one belongs to it
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry_ms: int | None = None
        self._fields_seen = False
        self._at_start = True  # a UTF-8 byte order mark may open the stream

    @property
    def pending(self) -> bool:
        """True when bytes or fields of an event not yet dispatched are held."""
        return bool(self._buffer) or self._fields_seen

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Add ``chunk`` and return the events it completed, in order."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        self._buffer += chunk
        if self._at_start:
            if len(self._buffer) < len(_BOM) and _BOM.startswith(self._buffer):
                return []  # still possibly a byte order mark: wait for more bytes
            self._at_start = False
            if self._buffer.startswith(_BOM):
                del self._buffer[:len(_BOM)]
        events: list[SseEvent] = []
        start = 0
        for match in _EOL.finditer(self._buffer):
            event = self._line(self._buffer[start:match.start()].decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
            start = match.end()
            # a CR ending the buffer may be the first half of a CRLF split across chunks
            self._skip_lf = start == len(self._buffer) and match.group() == b"\r"
        del self._buffer[:start]
        return events

    def _line(self, line: str) -> SseEvent | None:
        """Apply one complete line; return the event a blank line dispatches."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        self._fields_seen = True
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._fields_seen = [], "", False
        if not data:
            return None
        return SseEvent(event=event or "message", data="\n".join(data), id=self._id, retry_ms=self._retry_ms)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when absent or unreadable.

    ``value`` is delta-seconds (``"120"``; a decimal such as ``"1.5"`` is
    accepted too) or an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``),
    counted from ``now`` (seconds since the epoch). A date in the past gives
    0.0; a negative or non-finite number gives None.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if 0.0 <= seconds < math.inf else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; "-0000" parses as zone-less
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)
