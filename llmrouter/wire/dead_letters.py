"""The wire side of ``llmrouter dlq``: dead letters and the requests in them, as bytes.

:mod:`llmrouter.core.dlq` decides what to list and what a replay produces
without knowing an encoding; it asks a :class:`~llmrouter.core.dlq.LetterFormat`.
:class:`WireLetters` is that format on the wire: the codec (Avro
single-object encoding or JSON) and intake's own rules for a valid request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmrouter.core.dlq import fresh_deadline
from llmrouter.wire.codec import MAGIC, Codec, encode_json
from llmrouter.wire.reading import read_request


class WireLetters:
    """Reads DeadLetter records and judges and rewrites the requests they hold (a ``LetterFormat``)."""

    def __init__(self, codec: Codec | None = None) -> None:
        self._codec = codec or Codec()

    def dead_letter(self, value: bytes | None) -> Mapping[str, Any]:
        """The decoded DeadLetter record (UndecodableRequest when the bytes are neither Avro nor JSON)."""
        return self._codec.decode("DeadLetter", value)

    def request_problem(self, value: bytes) -> str | None:
        """Why ``value`` is not a valid LLMRequest (what intake would say), or None."""
        error = read_request(self._codec, value, priority="normal", received_at_ms=0).error
        return None if error is None else f"{error.code}: {error}"

    def encoding(self, value: bytes) -> str:
        """``"avro"`` for Avro single-object encoding, else ``"json"``."""
        return "avro" if value[:2] == MAGIC else "json"

    def with_fresh_deadline(self, value: bytes, *, now_ms: int) -> bytes:
        """``value`` (a valid request) rewritten by :func:`~llmrouter.core.dlq.fresh_deadline`, in the
        encoding it came in (Avro is written again with the current LLMRequest schema)."""
        rewritten = fresh_deadline(self._codec.decode("LLMRequest", value), now_ms=now_ms)
        if self.encoding(value) == "avro":
            return self._codec.encode_avro("LLMRequest", rewritten)
        return encode_json(rewritten)
