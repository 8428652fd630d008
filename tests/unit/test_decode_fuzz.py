"""The decoder fuzz: whatever bytes arrive, intake's reading of them ends in exactly one outcome, a valid
request or one classified error (UndecodableRequest or InvalidRequest), and that outcome can be written
(the error's reason, the request's every text field and its result record all encode).

Three families, 10,500 cases in all: raw bytes, JSON values (huge integers, deep nesting, lone surrogates,
a wrong-typed value in every field) and Avro (valid records, their bytes mutated). An exception of any
other type is what froze a partition's commit (issue 19, item 3)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrouter.core.outcomes import Refusal
from llmrouter.errors import InvalidRequest, UndecodableRequest
from llmrouter.wire.codec import MAGIC, Codec
from llmrouter.wire.contract import Request, refusal_record, unparsed_result_record
from llmrouter.wire.dead_letters import WireLetters
from llmrouter.wire.reading import read_request

CODEC = Codec()
NOW_MS = 1_700_000_000_000


def fuzz(cases: int) -> settings:
    """``cases`` examples, no deadline (the run is bounded by the count), nothing kept between runs."""
    return settings(max_examples=cases, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(value: bytes) -> str:
    """The one outcome of ``value``, checked to be writable: ``"request"`` or the error's code."""
    reading = read_request(CODEC, value, priority="normal", received_at_ms=NOW_MS)
    if reading.error is not None:
        assert reading.request is None
        assert type(reading.error) in (UndecodableRequest, InvalidRequest), repr(reading.error)
        reason = str(reading.error)
        reason.encode("utf-8")  # the dead letter's reason and the error result's message
        CODEC.encode_avro("LLMResult", unparsed_result_record("r", priority="normal", received_at_ms=NOW_MS,
                                                              now_ms=NOW_MS, error_code=reading.error.code,
                                                              error_message=reason))
        return reading.error.code
    request = reading.request
    assert isinstance(request, Request)
    for text in texts(request):
        text.encode("utf-8")  # keys (ledger, quota, cache) and every record that echoes a field
    refusal = Refusal(status="rejected", code="test", message="m")
    CODEC.encode_avro("LLMResult", refusal_record(request, refusal, now_ms=NOW_MS))
    return "request"


def texts(request: Request) -> list[str]:
    return [request.request_id, request.prompt or "", request.task_type, request.user_id or "",
            request.cache_policy, request.reply_to or "", *(request.providers or ()),
            *(text for message in request.messages for text in message), *request.metadata,
            *request.metadata.values()]


# -- raw bytes ----------------------------------------------------------------------------------------------

@fuzz(5_000)
@given(st.one_of(st.binary(max_size=64), st.binary(max_size=64).map(lambda b: MAGIC + b),
                 st.binary(max_size=64).map(lambda b: b"{" + b), st.binary(max_size=64).map(lambda b: b" {\"" + b)))
def test_any_bytes_end_in_one_outcome(value: bytes) -> None:
    outcome(value)


# -- JSON values --------------------------------------------------------------------------------------------

class Raw:
    """JSON text put into the document as it is (what json.dumps cannot write: 5,000 digits, 100,000 levels)."""

    def __init__(self, text: str) -> None:
        self.text = text


SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.one_of(st.text(max_size=12), st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), SURROGATES,
                                                 st.text(max_size=4)))
HUGE = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70),
    st.integers(min_value=300, max_value=6_000).map(lambda n: Raw("9" * n)),  # past 4,300 digits: a ValueError
    st.sampled_from([Raw("1e400"), Raw("-1e400"), Raw("NaN"), Raw("Infinity"), Raw("-0.0")]),
)
DEEP = st.integers(min_value=5, max_value=100_000).map(lambda n: Raw("[" * n + "]" * n))
SCALARS = st.one_of(st.none(), st.booleans(), HUGE, st.floats(allow_nan=True), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(TEXT, inner, max_size=3)), max_leaves=4)
ANY = st.one_of(VALUES, DEEP)

GOOD = st.fixed_dictionaries({"request_id": st.text(min_size=1, max_size=8)}, optional={
    "prompt": st.text(max_size=8), "max_tokens": st.integers(min_value=1, max_value=512),
    "messages": st.lists(st.fixed_dictionaries({"role": st.just("user"), "content": TEXT}), max_size=1),
    "user_id": TEXT, "metadata": st.dictionaries(TEXT, TEXT, max_size=1), "deadline_ms": HUGE,
    "created_at_ms": HUGE, "seed": HUGE, "temperature": st.floats(min_value=0, max_value=2)})
FIELDS = ["request_id", "prompt", "messages", "max_tokens", "temperature", "task_type", "user_id", "priority",
          "deadline_ms", "timeout_ms", "stream", "cache_policy", "providers", "reply_to", "metadata",
          "created_at_ms", "seed", "not_a_field"]


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A request object: some fields good, one or two of them (any field, or one the record does not
    have) any JSON value at all, mostly of the wrong type."""
    fields: dict[str, Any] = draw(GOOD)
    for name, value in draw(st.lists(st.tuples(st.sampled_from(FIELDS), ANY), max_size=2)):
        fields[name] = value
    return dumps(fields)


def dumps(value: Any) -> bytes:
    """``value`` as JSON text (lone surrogates as their escapes, as a JSON producer writes them)."""
    raws: list[str] = []

    def placeholder(raw: Raw) -> str:
        raws.append(raw.text)
        return f"\x00raw{len(raws) - 1}\x00"

    def swap(item: Any) -> Any:
        if isinstance(item, Raw):
            return placeholder(item)
        if isinstance(item, list):
            return [swap(i) for i in item]
        if isinstance(item, dict):
            return {k: swap(v) for k, v in item.items()}
        return item

    text = json.dumps(swap(value))
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), raw, 1)
    return text.encode("utf-8")


@fuzz(2_500)
@given(documents())
def test_any_json_request_ends_in_one_outcome(value: bytes) -> None:
    outcome(value)
    outcome(value.decode("unicode_escape", "ignore").encode("utf-8", "surrogatepass"))  # raw, surrogates as bytes


# -- Avro ---------------------------------------------------------------------------------------------------

AVRO_TEXT = st.text(max_size=12)
AVRO_LONG = st.integers(min_value=-2**63, max_value=2**63 - 1)
RECORDS = st.fixed_dictionaries({"request_id": AVRO_TEXT}, optional={
    "prompt": st.none() | AVRO_TEXT, "messages": st.lists(st.fixed_dictionaries(
        {"role": AVRO_TEXT, "content": AVRO_TEXT}), max_size=2),
    "max_tokens": st.integers(min_value=-2**31, max_value=2**31 - 1), "temperature": st.floats(),
    "user_id": st.none() | AVRO_TEXT, "deadline_ms": st.none() | AVRO_LONG, "stream": st.booleans(),
    "providers": st.none() | st.lists(AVRO_TEXT, max_size=2), "metadata": st.dictionaries(AVRO_TEXT, AVRO_TEXT,
                                                                                      max_size=2),
    "created_at_ms": st.none() | AVRO_LONG,
})


@st.composite
def mutated_avro(draw: st.DrawFn) -> bytes:
    """A valid record in single-object encoding, then cut, or bytes flipped, inserted or removed."""
    data = bytearray(CODEC.encode_avro("LLMRequest", draw(RECORDS)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        how = draw(st.sampled_from(["cut", "flip", "insert", "remove"]))
        if how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif at < len(data):
            if how == "flip":
                data[at] ^= draw(st.integers(min_value=1, max_value=255))
            else:
                del data[at]
    return bytes(data)


@fuzz(2_500)
@given(mutated_avro())
def test_any_mutated_avro_request_ends_in_one_outcome(value: bytes) -> None:
    for end in range(len(value), 1, -7):  # and the record cut short at every 7th byte (a cheap fan-out)
        outcome(value[:end])


# -- the poisons the issue names, each in its one outcome --------------------------------------------------

def test_the_named_poisons_each_end_in_their_classified_error():
    """A 5,000-digit integer and 100,000-deep nesting are undecodable (they were a ValueError and a
    RecursionError); a lone-surrogate user_id, an out-of-range long and an integer temperature no double
    holds are invalid requests; a cut Avro body, and lengths or counts far past the bytes there, are
    undecodable at once (nothing is allocated for them)."""
    valid = CODEC.encode_avro("LLMRequest", {"request_id": "r", "prompt": "p"})
    cases = {
        b'{"request_id": "r", "prompt": "p", "max_tokens": ' + b"9" * 5_000 + b"}": "undecodable",
        b'{"request_id": "r", "prompt": "p", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}": "undecodable",
        b'{"request_id": "r", "prompt": "p", "user_id": "\\ud800"}': "invalid_request",
        b'{"request_id": "r", "prompt": "p", "created_at_ms": -' + b"9" * 400 + b"}": "invalid_request",
        b'{"request_id": "r", "prompt": "p", "temperature": ' + b"9" * 400 + b"}": "invalid_request",
        valid[:-3]: "undecodable",
        valid[:10] + zigzag(2**50) + b"r": "undecodable",  # a request_id said to be a petabyte long
        valid[:10] + b"\x02r\x00" + zigzag(2**40): "undecodable",  # a trillion chat messages, none there
        valid: "request",
    }
    assert {value[:60]: outcome(value) for value in cases} == {value[:60]: code for value, code in cases.items()}


def zigzag(n: int) -> bytes:
    """``n`` as Avro writes a long: zigzag, then base-128 varint."""
    n, out = (n << 1) ^ (n >> 63), b""
    while n > 0x7F:
        out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
    return out + bytes([n])


def test_a_lone_surrogate_is_named_where_it_is():
    """The reason says which field holds the lone surrogate, so the sender can find it."""
    for doc, where in [({"user_id": "a\ud800"}, "user_id"), ({"metadata": {"tenant": "\udfff"}}, "metadata.tenant"),
                       ({"messages": [{"role": "user", "content": "\ud83d"}]}, "messages[0].content")]:
        value = json.dumps({"request_id": "r", "prompt": "p", **doc}).encode()
        reading = read_request(CODEC, value, priority="normal", received_at_ms=NOW_MS)
        assert isinstance(reading.error, InvalidRequest) and str(reading.error).startswith(f"{where} is not valid")
        assert reading.decoded["request_id"] == "r"  # kept: the requester is told


def test_dlq_replay_judges_a_request_as_intake_does():
    """`llmrouter dlq replay` skips what intake would dead-letter again: a lone-surrogate user_id and a
    5,000-digit integer too (the first it took for a request, the second raised)."""
    letters = WireLetters(CODEC)
    assert letters.request_problem(b'{"request_id": "r", "prompt": "p", "user_id": "\\ud800"}').startswith(
        "invalid_request: user_id is not valid Unicode text")
    assert letters.request_problem(b'{"request_id": "r", "prompt": "p", "seed": ' + b"9" * 5_000 + b"}").startswith(
        "undecodable: invalid JSON: ValueError")
    assert letters.request_problem(b'{"request_id": "r", "prompt": "p"}') is None
