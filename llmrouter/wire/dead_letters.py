"""The wire side of ``llmrouter dlq``: dead letters and the requests in them, as bytes.

:mod:`llmrouter.core.dlq` decides what to list and what a replay produces
without knowing an encoding; it asks a :class:`~llmrouter.core.dlq.LetterFormat`.
:class:`WireLetters` is that format on the wire: the codec (Avro
single-object encoding or JSON) and intake's own rules for a valid request.

:func:`fit_letter` keeps a dead letter within the producer's record limit:
a letter that would be over it (it holds a copy of an oversized request)
keeps as much of the original bytes as fits, and says what it cut, in the
reason and in the record's headers (:data:`TRUNCATED_HEADER`, the original
size, the sha256 of the whole original), so nothing is lost unseen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from llmrouter.core.dlq import fresh_deadline
from llmrouter.core.sizes import cut_to_fit, over_by
from llmrouter.wire.codec import MAGIC, Codec, encode_json
from llmrouter.wire.reading import read_request

TRUNCATED_HEADER = "llmrouter-truncated"  # what was cut: "original_value", or "original_value,original_key,headers"
ORIGINAL_SIZE_HEADER = "llmrouter-original-size"  # bytes of the whole original value
ORIGINAL_SHA256_HEADER = "llmrouter-original-sha256"  # hex sha256 of the whole original value
MAX_REASON_CHARS = 2000  # a reason is cut to this only when the letter is too large without its copies
Header = tuple[str, bytes | None]


def fit_letter(record: dict[str, Any], *, encode: Callable[[dict[str, Any]], bytes], key: bytes | None,
               headers: list[Header], limit: int) -> tuple[bytes, list[Header]]:
    """The encoded DeadLetter ``record`` within ``limit`` (with ``key`` and ``headers``), and the headers that
    say what was cut (none when it fit whole).

    First the copy of the original value is truncated to what fits; if the letter is still too large
    (the upstream key or headers are huge), those copies go too and the reason is cut. The reason then
    ends with what was kept of how many bytes and the sha256 of the whole original.
    """
    data = encode(record)
    if over_by(key, data, headers, limit=limit) <= 0:
        return data, []
    original: bytes = record.get("original_value") or b""
    digest = hashlib.sha256(original).hexdigest()
    marks: list[Header] = [(TRUNCATED_HEADER, b"original_value"), (ORIGINAL_SIZE_HEADER, str(len(original)).encode()),
                           (ORIGINAL_SHA256_HEADER, digest.encode())]
    kept = len(original)
    growth = (len(data) - len(encode({**record, "original_value": b""}))) / kept if kept else 1.0
    for _ in range(8):  # a cut at the copy's measured growth fits but for uneven bytes: two passes in practice
        note = f" [dead letter truncated: original_value keeps {kept} of {len(original)} bytes, sha256 {digest}]"
        cut = {**record, "original_value": original[:kept], "reason": record["reason"] + note}
        data = encode(cut)
        overflow = over_by(key, data, headers + marks, limit=limit)
        if overflow <= 0:
            return data, marks
        if kept == 0:
            break
        kept = cut_to_fit(kept, overflow, growth=growth)
    marks[0] = (TRUNCATED_HEADER, b"original_value,original_key,headers,reason")
    note = (f" [dead letter truncated: original_value, original_key and headers dropped; original_value was "
            f"{len(original)} bytes, sha256 {digest}]")
    bare = {**record, "original_value": b"", "original_key": None, "headers": [],
            "reason": record["reason"][:MAX_REASON_CHARS] + note}
    return encode(bare), marks


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
