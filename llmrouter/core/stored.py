"""The record the ``answered`` table keeps per request_id: compact, and enough to
re-emit the result byte for byte.

Layout (version 1)::

    0x01 | flags (1 byte, bit 0 = delivered) | stored_at_ms (8 bytes, big-endian) | status (1 byte) | result bytes

``result bytes`` are the encoded LLMResult exactly as they were (or are to be)
sent. ``delivered`` is set once the result was durably sent: a re-emitted copy
carries the replay header only then, so a consumer that drops replays never
drops the only copy of an answer whose first send was cut short by a crash.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

VERSION = 1
_HEADER = struct.Struct(">BBqB")
_STATUSES = ("ok", "rejected", "error", "timeout")
_DELIVERED = 0x01


@dataclass(frozen=True, kw_only=True)
class StoredAnswer:
    result: bytes
    status: str
    stored_at_ms: int
    delivered: bool = False

    def to_bytes(self) -> bytes:
        flags = _DELIVERED if self.delivered else 0
        return _HEADER.pack(VERSION, flags, self.stored_at_ms, _STATUSES.index(self.status)) + self.result

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredAnswer:
        if len(data) < _HEADER.size or data[0] != VERSION:
            raise ValueError(f"not a stored answer of version {VERSION} ({len(data)} bytes, starts {data[:1].hex()!r})")
        _version, flags, stored_at_ms, status = _HEADER.unpack_from(data)
        return cls(result=bytes(data[_HEADER.size:]), status=_STATUSES[status], stored_at_ms=stored_at_ms,
                   delivered=bool(flags & _DELIVERED))

    def as_delivered(self) -> StoredAnswer:
        return replace(self, delivered=True)

    def expired(self, *, now_ms: int, window_s: float) -> bool:
        """Older than the idempotency window: treated as never answered."""
        return now_ms - self.stored_at_ms > window_s * 1000.0
