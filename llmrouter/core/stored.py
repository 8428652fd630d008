"""The record the ``answered`` table keeps per request_id: compact, and enough to
re-emit the result byte for byte.

Layout (version 1)::

    0x01 | flags (1 byte, bit 0 = delivered) | stored_at_ms (8 bytes, big-endian) | status (1 byte) | result bytes

``result bytes`` are the encoded LLMResult exactly as they were (or are to be)
sent: every final outcome (``ok``, ``rejected``, ``error``, ``timeout``), so a
request delivered again never pays a provider again nor gets a different
result (:func:`re_emits`). ``delivered`` is set once the result was durably sent: a re-emitted copy
carries the replay header only then, so a consumer that drops replays never
drops the only copy of an answer whose first send was cut short by a crash.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

VERSION = 1
_HEADER = struct.Struct(">BBqB")
_STATUSES = ("ok", "rejected", "error", "timeout")
STATUSES = frozenset(_STATUSES)  # every final outcome is stored
RETRIED_BY_DLQ_REPLAY = frozenset({"error", "timeout"})  # a DLQ replay asks for a new try of these
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


def re_emits(stored: StoredAnswer, *, dlq_replay: bool, received_at_ms: int) -> bool:
    """Whether a delivery of a request with ``stored`` gets it again (rather than being served anew).

    Always, except for a replay of its dead letter (``llmrouter dlq replay``) when the stored outcome is
    an ``error`` or ``timeout`` stored before that replay was received: the operator asks for a new try
    on purpose. The replay's own outcome is stored after it was received, so the replay delivered again
    (a crash, a reseek) gets that outcome back and pays nothing more.
    """
    if not dlq_replay or stored.status not in RETRIED_BY_DLQ_REPLAY:
        return True
    return stored.stored_at_ms >= received_at_ms
