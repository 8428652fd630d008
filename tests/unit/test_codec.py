"""Avro single-object encoding and JSON, as the external contract defines them."""

from __future__ import annotations

import json
import struct

import avro.schema
import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from structlog.testing import capture_logs

from llmrouter.wire.codec import MAGIC, Codec, SchemaStore, describe_fingerprint
from llmrouter.errors import UndecodableRequest
from llmrouter.schemas import SCHEMA_NAMES, history, raw
from tests.interop.records import SAMPLES

# What Apache Avro Java 1.12.2 wrote and printed for schemas/LLMRequest.avsc
# (tests/interop/AvroInterop.java `headers`): BinaryMessageEncoder's first 10
# bytes and SchemaNormalization.parsingFingerprint64.
JAVA_LLMREQUEST_HEADER = bytes.fromhex("c30170fa91f553f64877")
JAVA_LLMREQUEST_FINGERPRINT64 = 8595390729299294832


def reference_fingerprint(name: str) -> bytes:
    """The `avro` library's CRC-64-AVRO fingerprint of schema ``name``, its bytes as it returns them."""
    return avro.schema.parse(json.dumps(raw(name))).fingerprint("CRC-64-AVRO")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_header_carries_the_reference_avro_librarys_fingerprint_bytes_as_they_are(name):
    """The 8 bytes after C3 01 in what we write equal the `avro` library's fingerprint bytes, unchanged."""
    data = Codec().encode_avro(name, SAMPLES[name])
    assert data[:2] == MAGIC
    assert data[2:10] == reference_fingerprint(name) == SchemaStore.default().fingerprint_of(name)


def test_the_llmrequest_header_is_the_one_avro_java_writes():
    """Pinned from Avro Java's BinaryMessageEncoder: C3 01 70 FA 91 F5 53 F6 48 77 (not the reversed 77 48 …)."""
    assert Codec().encode_avro("LLMRequest", SAMPLES["LLMRequest"])[:10] == JAVA_LLMREQUEST_HEADER


def test_a_fingerprint_is_described_by_its_wire_bytes_and_avro_javas_64_bit_value():
    """describe_fingerprint names the bytes in wire order, the CRC as a hex number and as Java's signed long;
    for a header Java does not know, that long is the number its MissingSchemaException prints."""
    assert describe_fingerprint(JAVA_LLMREQUEST_HEADER[2:]) == (
        "header bytes 70 fa 91 f5 53 f6 48 77 = CRC-64-AVRO 0x7748f653f591fa70 "
        f"(parsingFingerprint64 {JAVA_LLMREQUEST_FINGERPRINT64})")
    assert describe_fingerprint(b"\xff" * 8).endswith("0xffffffffffffffff (parsingFingerprint64 -1)")
    # BinaryMessageDecoder on C3 01 77 48 F6 53 F5 91 FA 70 (0.1.0's LLMRequest header):
    # "MissingSchemaException: Cannot resolve schema for fingerprint: 8140979759287257207"
    assert describe_fingerprint(bytes.fromhex("7748f653f591fa70")).endswith("(parsingFingerprint64 8140979759287257207)")


def test_an_unknown_fingerprint_is_refused_naming_it_unambiguously():
    """The error for an unregistered writer schema carries the header bytes and parsingFingerprint64."""
    unknown = bytes.fromhex("0102030405060780")
    with pytest.raises(UndecodableRequest) as refused:
        Codec().decode("LLMRequest", MAGIC + unknown + b"\x02")
    assert str(refused.value) == (
        "unknown Avro schema fingerprint: header bytes 01 02 03 04 05 06 07 80 = CRC-64-AVRO 0x8007060504030201 "
        "(parsingFingerprint64 -9221395093405892095); the writer schema is not registered")


def test_an_avro_request_round_trips_with_the_single_object_header():
    """encode_avro writes C3 01 + fingerprint + body; decode fills in defaults."""
    codec = Codec()
    data = codec.encode_avro("LLMRequest", {"request_id": "r1", "prompt": "hi"})
    assert data[:2] == MAGIC and data[2:10] == codec.store.fingerprint_of("LLMRequest")
    decoded = codec.decode("LLMRequest", data)
    assert decoded["request_id"] == "r1" and decoded["max_tokens"] == 256 and decoded["cache_policy"] == "use"


def test_a_json_object_is_accepted_as_it_is():
    """A JSON object decodes to its dict (validation is the contract's business)."""
    assert Codec().decode("LLMRequest", b' {"request_id": "j", "prompt": "p"}') == {"request_id": "j", "prompt": "p"}


def legacy_message(name: str, record: dict) -> bytes:
    """``record`` as llm-router 0.1.0 wrote it: fastavro's hex read as a number and packed little-endian."""
    canonical = to_parsing_canonical_form(fastavro.parse_schema(raw(name), _write_hint=False))
    old_fingerprint = struct.pack("<Q", int(fingerprint(canonical, "CRC-64-AVRO"), 16))
    return MAGIC + old_fingerprint + Codec().encode_avro(name, record)[10:]


def test_the_legacy_header_is_the_byte_reversed_fingerprint():
    """What 0.1.0 wrote for LLMRequest: C3 01 77 48 F6 53 F5 91 FA 70, Avro Java's header reversed."""
    assert legacy_message("LLMRequest", SAMPLES["LLMRequest"])[:10] == bytes.fromhex("c3017748f653f591fa70")


def test_a_value_with_the_legacy_header_is_still_read_and_counted():
    """For one release a reader accepts the reversed header of a known schema and counts it per schema."""
    codec = Codec()
    decoded = codec.decode("LLMRequest", legacy_message("LLMRequest", SAMPLES["LLMRequest"]))
    assert decoded == codec.decode("LLMRequest", codec.encode_avro("LLMRequest", SAMPLES["LLMRequest"]))
    assert codec.legacy_headers == {"LLMRequest": 1}


def test_legacy_headers_are_counted_every_time_and_logged_once_per_schema():
    """Three legacy LLMRequests and one legacy Event: counted 3 and 1, passed to the callback each time,
    one warning per schema naming both headers; a header in the spec's order is not counted."""
    seen: list[str] = []
    codec = Codec(on_legacy_header=seen.append)
    with capture_logs() as logs:
        for _ in range(3):
            codec.decode("LLMRequest", legacy_message("LLMRequest", SAMPLES["LLMRequest"]))
        codec.decode("Event", legacy_message("Event", SAMPLES["Event"]))
        codec.decode("Event", codec.encode_avro("Event", SAMPLES["Event"]))
    assert codec.legacy_headers == {"LLMRequest": 3, "Event": 1}
    assert seen == ["LLMRequest", "LLMRequest", "LLMRequest", "Event"]
    warnings = [entry for entry in logs if entry["event"] == "avro_legacy_header"]
    assert [(w["log_level"], w["schema"]) for w in warnings] == [("warning", "LLMRequest"), ("warning", "Event")]
    assert warnings[0]["header"].startswith("header bytes 77 48 f6 53 f5 91 fa 70 ")
    assert warnings[0]["spec_header"].startswith("header bytes 70 fa 91 f5 53 f6 48 77 ")


def test_a_value_read_with_the_legacy_header_is_written_back_in_the_specs_order():
    """Writers always write the spec's order, whatever header the value came in with."""
    codec = Codec()
    decoded = codec.decode("LLMRequest", legacy_message("LLMRequest", SAMPLES["LLMRequest"]))
    assert codec.encode_avro("LLMRequest", decoded)[2:10] == reference_fingerprint("LLMRequest")


@pytest.mark.parametrize("data, reason", [
    (b"", "empty message value"),
    (b"\x00\x01\x02", "neither Avro single-object encoding"),
    (b"[1, 2]", "neither Avro single-object encoding"),
    (b"{not json", "invalid JSON"),
    (b"\xc3\x01\x00", "header truncated"),
    (b"\xc3\x01" + b"\x11" * 8 + b"\x02", "unknown Avro schema fingerprint"),
])
def test_undecodable_values_are_refused_with_the_reason(data, reason):
    """Anything that is neither form raises UndecodableRequest saying why."""
    with pytest.raises(UndecodableRequest, match=reason):
        Codec().decode("LLMRequest", data)


def test_a_corrupt_avro_body_is_refused_not_crashed_on():
    """A known fingerprint with a body that does not match the schema is undecodable."""
    codec = Codec()
    good = codec.encode_avro("LLMRequest", {"request_id": "r1", "prompt": "hi"})
    with pytest.raises(UndecodableRequest, match="does not match its schema"):
        codec.decode("LLMRequest", good[:11])


def test_a_message_written_with_the_older_schema_is_read_after_a_field_is_added():
    """Schema evolution: v1 writes, v2 (one more optional field with a default) reads."""
    v1 = raw("LLMRequest")
    v2 = {**v1, "fields": v1["fields"] + [{"name": "region", "type": ["null", "string"], "default": None}]}
    writer = Codec()
    old_message = writer.encode_avro("LLMRequest", {"request_id": "old", "prompt": "from v1"})

    store = SchemaStore.default()  # knows v1 by fingerprint
    store.set_reader(v2)  # v2 is now the current version
    decoded = Codec(store).decode("LLMRequest", old_message)
    assert decoded["request_id"] == "old" and decoded["prompt"] == "from v1" and decoded["region"] is None


def test_a_result_written_by_the_released_020_schema_is_still_read_with_the_added_fields_defaults():
    """schemas/history/LLMResult.1.avsc is the LLMResult of 0.2.0; a worker of 0.2.0 wrote its results with it.
    Header from the reference `avro` library's fingerprint of that file, body from fastavro with that schema."""
    import io

    released = next(schema for schema in history() if schema["name"] == "LLMResult")
    assert "route_reason" not in {field["name"] for field in released["fields"]}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(released), {"request_id": "old", "status": "ok",
                                                                        "route": "cloud", "text": "hi"})
    header = MAGIC + avro.schema.parse(json.dumps(released)).fingerprint("CRC-64-AVRO")
    decoded = Codec().decode("LLMResult", header + body.getvalue())
    assert (decoded["request_id"], decoded["route"], decoded["text"], decoded["route_reason"]) == (
        "old", "cloud", "hi", "")


def test_results_are_avro_by_default_and_json_by_setting():
    """The output encoding setting picks Avro single-object or JSON for what the router writes."""
    record = {"request_id": "r", "status": "ok"}
    assert Codec().encode("LLMResult", record)[:2] == MAGIC
    assert json.loads(Codec(output="json").encode("LLMResult", record)) == record
    with pytest.raises(ValueError, match="'avro' or 'json'"):
        Codec(output="xml")
