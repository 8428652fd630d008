"""An upstream message's bytes -> a valid request, or exactly one classified error (pure).

Intake's first step, and the only place it turns bytes into a :class:`Request`:
the value is decoded (:meth:`Codec.decode`, raising only
:class:`UndecodableRequest`), a JSON value is held against what its Avro form
could carry (:meth:`Codec.misfit`: valid Unicode, numbers in their field's
range), and the contract's rules are checked (:func:`parse_request`, raising
only :class:`InvalidRequest`). Nothing else may escape: an exception of
another type would leave intake's message without an outcome, and its
partition's commit behind it for good. The decoder fuzz
(``tests/unit/test_decode_fuzz.py``) holds every step to that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmrouter.errors import InvalidRequest, RequestError
from llmrouter.wire.codec import Codec, is_avro
from llmrouter.wire.contract import Request, parse_request

SCHEMA = "LLMRequest"


@dataclass(frozen=True)
class Reading:
    """What one message is: ``request`` or ``error``, never both, never neither.

    ``decoded`` is what the value decoded to, whether or not it is a valid
    request (``{}`` when it did not decode): a dead letter's error result
    takes its request_id and reply_to from it.
    """

    decoded: dict[str, Any] = field(default_factory=dict)
    request: Request | None = None
    error: RequestError | None = None

    def __post_init__(self) -> None:
        if (self.request is None) == (self.error is None):
            raise ValueError("a reading is a request or an error, exactly one of them")


def read_request(codec: Codec, value: bytes | None, *, priority: str, received_at_ms: int) -> Reading:
    """Read ``value`` as an LLMRequest that arrived on the topic of ``priority``."""
    try:
        decoded = codec.decode(SCHEMA, value)
    except RequestError as exc:
        return Reading(error=exc)
    try:
        problem = None if is_avro(value) else codec.misfit(SCHEMA, decoded)
        if problem is not None:
            raise InvalidRequest(problem)
        return Reading(decoded, request=parse_request(decoded, priority=priority, received_at_ms=received_at_ms))
    except RequestError as exc:
        return Reading(decoded, error=exc)
