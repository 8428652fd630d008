"""Avro single-object encoding and JSON, as the external contract defines them."""

from __future__ import annotations

import json

import avro.schema
import pytest

from llmrouter.codec import MAGIC, Codec, SchemaStore
from llmrouter.errors import UndecodableRequest
from llmrouter.schemas import SCHEMA_NAMES, raw


def test_every_schema_fingerprint_matches_the_reference_avro_library():
    """Our CRC-64-AVRO fingerprints equal the `avro` library's (little-endian on the wire)."""
    store = SchemaStore.default()
    for name in SCHEMA_NAMES:
        reference = avro.schema.parse(json.dumps(raw(name))).fingerprint("CRC-64-AVRO")
        assert store.fingerprint_of(name) == reference[::-1], name


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


def test_results_are_avro_by_default_and_json_by_setting():
    """The output encoding setting picks Avro single-object or JSON for what the router writes."""
    record = {"request_id": "r", "status": "ok"}
    assert Codec().encode("LLMResult", record)[:2] == MAGIC
    assert json.loads(Codec(output="json").encode("LLMResult", record)) == record
    with pytest.raises(ValueError, match="'avro' or 'json'"):
        Codec(output="xml")
