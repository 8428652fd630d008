"""Record sizes against the producer's limit (llmrouter/core/sizes.py), dead letters cut to fit
(llmrouter/wire/dead_letters.py), the caps of echoed request fields (llmrouter/wire/contract.py), and the
writes that give up on what no retry can mend (llmrouter/runtime/writes.py)."""

from __future__ import annotations

import asyncio
import hashlib
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.errors import (KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError,
                             TopicAuthorizationFailedError)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.types import FutureMessage

from llmrouter.config.settings import Settings
from llmrouter.core.sizes import RECORD_OVERHEAD_BYTES, cut_to_fit, record_bytes, varint_bytes
from llmrouter.errors import Fenced, RecordTooLarge, WriteFailed
from llmrouter.runtime.delivery import too_large_record
from llmrouter.runtime.writes import (CheckedProducerBuffer, check_record, is_permanent, until_written,
                                      with_retries, write_now)
from llmrouter.wire.codec import Codec
from llmrouter.wire.contract import FieldCaps, Request, check_fields, check_reply_to, check_size
from llmrouter.wire.dead_letters import (ORIGINAL_SHA256_HEADER, ORIGINAL_SIZE_HEADER, TRUNCATED_HEADER,
                                         fit_letter)

LIMIT = 1_000_000


@pytest.mark.parametrize("key, value, headers", [
    (None, None, []),
    (b"", b"", []),
    (b"request-1", b"x" * 100, [("traceparent", b"00-" + b"a" * 52)]),
    (b"k" * 200, b"v" * 999_000, [("a", None), ("llmrouter-source", b"t:0:12"), ("\u00e9t\u00e9", b"x" * 300)]),
    (b"k", b"v" * 16_383, [("h", b"y" * 2_097_151)]),
])
def test_record_bytes_is_the_producers_own_estimate(key, value, headers):
    """The size checks count a record exactly as aiokafka does before it refuses one (varints, headers,
    the 82-byte record and batch overhead): the two can never disagree."""
    assert record_bytes(key, value, headers) == DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


def test_the_overhead_margin_is_the_batch_header_and_the_records_own_fields():
    """An empty record takes the documented margin plus one byte each for a null key, a null value and no
    headers."""
    assert RECORD_OVERHEAD_BYTES == 82
    assert record_bytes(None, None) == RECORD_OVERHEAD_BYTES + 3


def test_varints_grow_a_byte_every_seven_bits_of_the_zigzagged_value():
    assert [varint_bytes(n) for n in (0, 63, 64, 8191, 8192, 1_048_576)] == [1, 1, 2, 2, 3, 4]


def test_a_cut_drops_the_overflow_and_never_goes_below_nothing():
    assert cut_to_fit(1_000, 0) == 1_000
    assert cut_to_fit(1_000, -5) == 1_000
    assert cut_to_fit(1_000, 300) == 700
    assert cut_to_fit(100, 300) == 0
    assert cut_to_fit(1_000, 300, growth=2.0) == 850  # each byte of the copy takes two encoded
    assert cut_to_fit(1_000, 300, growth=0.5) == 700  # never less than one a byte


def letter(original: bytes, *, headers: list[dict[str, Any]] | None = None, key: bytes | None = None) -> dict:
    return {"request_id": "r1", "source_topic": "llm.requests.normal", "source_partition": 0, "source_offset": 7,
            "original_key": key, "original_value": original, "headers": headers or [],
            "reason": "the request has neither a prompt nor chat messages", "error_code": "invalid_request",
            "attempts": 0, "failed_at_ms": 1}


@pytest.mark.parametrize("output", ["avro", "json"])
@pytest.mark.parametrize("size", [1_000_001, 1_048_000])
def test_a_dead_letter_over_the_limit_keeps_what_fits_and_says_what_it_cut(output, size):
    """The letter of a request over the limit fits with its key and headers; it keeps a prefix of the
    original, and its reason and headers give the original's size and sha256."""
    codec = Codec(output=output)
    original = bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)  # latin-1 above 0x7f: 2 bytes in JSON
    headers = [("traceparent", b"00-" + b"a" * 52)]
    data, marks = fit_letter(letter(original), encode=lambda r: codec.encode("DeadLetter", r), key=b"r1",
                             headers=headers, limit=LIMIT)
    assert record_bytes(b"r1", data, headers + marks) <= LIMIT
    read = codec.decode("DeadLetter", data)
    kept = read["original_value"].encode("latin-1") if output == "json" else read["original_value"]
    assert 0 < len(kept) < size and original.startswith(kept)
    digest = hashlib.sha256(original).hexdigest()
    assert dict(marks) == {TRUNCATED_HEADER: b"original_value", ORIGINAL_SIZE_HEADER: str(size).encode(),
                           ORIGINAL_SHA256_HEADER: digest.encode()}
    assert f"keeps {len(kept)} of {size} bytes, sha256 {digest}" in read["reason"]
    assert read["reason"].startswith("the request has neither a prompt")


def test_a_dead_letter_within_the_limit_is_sent_whole_and_unmarked():
    codec = Codec()
    record = letter(b"x" * 999_000)
    data, marks = fit_letter(record, encode=lambda r: codec.encode("DeadLetter", r), key=b"r1", headers=[],
                             limit=LIMIT)
    assert marks == [] and data == codec.encode("DeadLetter", record)


def test_a_dead_letter_too_large_even_without_its_value_drops_the_other_copies_too():
    """Upstream's headers alone over the limit: the key and header copies go as well, and the letter says so."""
    codec = Codec()
    record = letter(b"v" * 10, headers=[{"key": "huge", "value": b"h" * 1_040_000}], key=b"k" * 10)
    data, marks = fit_letter(record, encode=lambda r: codec.encode("DeadLetter", r), key=b"r1", headers=[],
                             limit=LIMIT)
    assert record_bytes(b"r1", data, marks) <= LIMIT
    read = codec.decode("DeadLetter", data)
    assert (read["headers"], read["original_key"], read["original_value"]) == ([], None, b"")
    assert dict(marks)[TRUNCATED_HEADER] == b"original_value,original_key,headers,reason"
    assert "original_key and headers dropped" in read["reason"]


def request(**fields: Any) -> Request:
    return Request(request_id="r1", prompt="p", **fields)


@pytest.mark.parametrize("fields, field, setting", [
    ({"task_type": "t" * 65}, "task_type is 65 characters", "max_task_type_chars"),
    ({"task_type": "t" * 999_000}, "task_type is 999000 characters", "max_task_type_chars"),
    ({"user_id": "u" * 257}, "user_id is 257 characters", "max_user_id_chars"),
    ({"providers": tuple(f"p{i}" for i in range(17))}, "providers is 17 names", "max_providers"),
    ({"providers": ("fast", "p" * 64)}, "providers[1] is 64 characters", "max_provider_name_chars"),
    ({"metadata": {f"k{i}": "v" for i in range(33)}}, "metadata is 33 entries", "max_metadata_entries"),
    ({"metadata": {"k" * 65: "v"}}, "is 65 characters", "max_metadata_key_chars"),
    ({"metadata": {"blob": "v" * 1025}}, "metadata['blob'] is 1025 characters", "max_metadata_value_chars"),
    ({"metadata": {f"k{i}": "v" * 1000 for i in range(9)}}, "metadata (keys and values together) is 9018",
     "max_metadata_chars"),
])
def test_each_echoed_field_over_its_cap_is_refused_naming_the_field_and_the_cap(fields, field, setting):
    refusal = check_fields(request(**fields), FieldCaps())
    assert refusal is not None and (refusal.status, refusal.code) == ("rejected", "field_too_large")
    assert field in refusal.message and f"limits.{setting}" in refusal.message


def test_fields_at_their_caps_pass_and_intake_checks_them_with_the_sizes():
    at_caps = request(task_type="t" * 64, user_id="u" * 256, providers=tuple(f"p{i}" for i in range(16)),
                      metadata={f"k{i}": "v" * 200 for i in range(32)})
    assert check_fields(at_caps, FieldCaps()) is None
    refusal = check_size(request(task_type="t" * 65), max_prompt_chars=100, max_tokens=100, caps=FieldCaps())
    assert refusal is not None and refusal.code == "field_too_large"


def test_a_reply_to_longer_than_any_topic_name_is_refused_without_being_echoed():
    refusal = check_reply_to("llm.replies." + "x" * 999_000, allowed=["llm.replies.*"], exists=True)
    assert refusal is not None and refusal.code == "reply_to_not_allowed"
    assert "999012 characters" in refusal.message and len(refusal.message) < 200


def test_the_shipped_settings_give_the_caps_their_defaults():
    settings = Settings()
    assert settings.limits.field_caps() == FieldCaps()
    assert settings.kafka.max_record_bytes == LIMIT  # faust's own default producer max_request_size


def test_a_record_over_the_limit_is_refused_with_its_size_and_the_setting():
    check_record(b"k", b"v" * 999_000, [], limit=LIMIT, what="a result")
    # 82 overhead + key 1+1 + value 3+1,000,000 + 1 header count + header "h" 1+1 and b"" 1
    with pytest.raises(RecordTooLarge, match=r"a result is 1000091 bytes .*kafka.max_record_bytes\) is 1000000"):
        check_record(b"k", b"v" * 1_000_000, [("h", b"")], limit=LIMIT, what="a result")


def test_a_record_that_cannot_be_encoded_or_is_refused_for_good_is_permanent():
    assert is_permanent(ValueError("x")) and is_permanent(TypeError()) and is_permanent(OverflowError())
    assert is_permanent(UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogate"))
    assert is_permanent(TopicAuthorizationFailedError()) and not is_permanent(NotLeaderForPartitionError())


def test_too_large_and_fenced_are_permanent_timeouts_and_lost_connections_are_not():
    assert is_permanent(RecordTooLarge("x")) and is_permanent(MessageSizeTooLargeError())
    assert is_permanent(Fenced())
    assert not is_permanent(KafkaConnectionError()) and not is_permanent(asyncio.TimeoutError())
    assert not is_permanent(WriteFailed("tries spent"))


class Writes:
    """A write that fails with the given errors in turn, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "written"


async def test_until_written_gives_up_at_once_on_a_record_too_large():
    """It used to try a too-large dead letter for ever, holding the slot and the commit."""
    write = Writes(MessageSizeTooLargeError("too big"))
    with pytest.raises(MessageSizeTooLargeError):
        await until_written(write, what="dead-letter")
    assert write.calls == 1


async def test_until_written_still_outlasts_a_passing_failure():
    write = Writes(KafkaConnectionError())
    assert await until_written(write, what="dead-letter") == "written" and write.calls == 2


async def test_with_retries_raises_a_permanent_error_as_it_is_without_retrying():
    write = Writes(RecordTooLarge("too big"))
    with pytest.raises(RecordTooLarge):
        await with_retries(write, what="send a result", attempts=3, first_backoff_s=0)
    assert write.calls == 1
    write = Writes(KafkaConnectionError(), KafkaConnectionError(), KafkaConnectionError())
    with pytest.raises(WriteFailed):
        await with_retries(write, what="send a result", attempts=3, first_backoff_s=0)
    assert write.calls == 3


class Channel:
    def __init__(self, error: Exception | None) -> None:
        self.error, self.sent = error, []

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(fut)
        fut.set_result("ok")


async def test_a_buffered_send_that_raises_fails_its_own_future_and_the_buffer_goes_on():
    """faust's buffer let the error escape its task (the worker crashed) and left the future pending."""
    buffer = CheckedProducerBuffer()
    bad = FutureMessage(SimpleNamespace(channel=Channel(MessageSizeTooLargeError("too big"))))
    good_channel = Channel(None)
    good = FutureMessage(SimpleNamespace(channel=good_channel))
    await buffer._send_pending(bad)
    await buffer._send_pending(good)
    assert isinstance(bad.exception(), MessageSizeTooLargeError)
    assert good.result() == "ok" and good_channel.sent == [good]


class Table:
    """What write_now touches of a faust table."""

    name = "answered"

    def __init__(self, limit: int) -> None:
        self.app = SimpleNamespace(conf=SimpleNamespace(producer_max_request_size=limit))
        self.data: dict[bytes, bytes] = {}
        self.sent: list[tuple[bytes, bytes]] = []

    def partition_for_key(self, key: bytes) -> int:
        return 0

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> asyncio.Future:
        self.sent.append((key, value))
        return asyncio.get_running_loop().create_future()


async def test_a_table_write_over_the_producers_limit_is_refused_before_anything_is_written():
    table = Table(LIMIT)
    with pytest.raises(RecordTooLarge, match="answered table write"):
        write_now(table, b"r1", b"x" * LIMIT)
    assert table.data == {} and table.sent == []
    write_now(table, b"r1", b"x" * 1000)
    assert table.data == {b"r1": b"x" * 1000} and len(table.sent) == 1


def test_the_publisher_reads_its_limit_from_the_producers_own_setting():
    """One limit: the publisher's checks read faust's producer_max_request_size (set from kafka.max_record_bytes)."""
    from llmrouter.runtime.publisher import Publisher

    app = faust.App("sizes-test", producer_max_request_size=123_456)
    topics = SimpleNamespace(results=SimpleNamespace(get_topic_name=lambda: "llm.results"))
    assert Publisher(app, topics, Codec(), metrics=None).max_record_bytes == 123_456


def test_an_answer_too_large_becomes_an_error_that_keeps_who_answered_and_the_cost_not_the_text():
    record = {"request_id": "r1", "status": "ok", "text": "x" * 1_100_000, "provider": "huge", "model": "m",
              "route": "cloud", "cost_usd": 0.25, "prompt_tokens": 3, "completion_tokens": 4096,
              "route_reason": "complex"}
    out = too_large_record(request(), record, size=1_100_200, limit=LIMIT, now_ms=5)
    assert (out["status"], out["error_code"]) == ("error", "result_too_large")
    assert "1100200 bytes" in out["error_message"] and "1000000" in out["error_message"]
    assert (out["provider"], out["cost_usd"], out["completion_tokens"]) == ("huge", 0.25, 4096)
    assert "text" not in out
