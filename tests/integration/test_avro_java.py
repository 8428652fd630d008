"""Apache Avro's Java library on the other side of the wire (tests/interop/AvroInterop.java).

A JVM upstream encodes with ``BinaryMessageEncoder`` and decodes with
``BinaryMessageDecoder``, the reference implementation of Avro single-object
encoding; its bytes are used as they are. Byte-level checks go through files;
the end-to-end check goes through the real broker and a real worker, with
Kafka's own Java producer and consumer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmrouter.wire.codec import MAGIC, Codec, describe_fingerprint
from llmrouter.infra import InfraError
from llmrouter.schemas import SCHEMA_NAMES
from llmrouter.testing.worker_process import WorkerProcess
from tests.interop.java import MAVEN_TIMEOUT_S, AvroJava, resolve_jars
from tests.interop.records import SAMPLES

# The first run resolves the jars (bounded by MAVEN_TIMEOUT_S) inside the first test's time.
pytestmark = pytest.mark.timeout(MAVEN_TIMEOUT_S + 300)


@pytest.fixture(scope="module")
def avro_java(pytestconfig: pytest.Config) -> AvroJava:
    """The Java program with its jars, resolved once per machine; Maven's progress goes to the terminal."""
    try:
        return AvroJava(resolve_jars(echo=_terminal(pytestconfig)))
    except InfraError as exc:
        reason = str(exc)
    pytest.fail(f"the Avro Java interop jars could not be resolved: {reason}", pytrace=False)


def _terminal(config: pytest.Config) -> Callable[[str], Any]:
    """Print a line past pytest's output capture (progress of a long first resolution)."""
    capture = config.pluginmanager.getplugin("capturemanager")

    def echo(line: str) -> None:
        if capture is None:  # run with -p no:capture
            print(line, flush=True)
            return
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)
    return echo


def as_java_prints(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as GenericData.toString prints it: bytes become ISO-8859-1 text, the rest is plain JSON."""
    def convert(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        if isinstance(value, list):
            return [convert(item) for item in value]
        return value
    return convert(record)


def test_java_writes_the_same_header_as_we_do_for_every_schema(avro_java: AvroJava):
    """BinaryMessageEncoder's first 10 bytes equal ours for each schema, and parsingFingerprint64 is the
    value our unknown-fingerprint message names."""
    codec = Codec()
    java = avro_java.headers()
    assert sorted(java) == sorted(SCHEMA_NAMES)
    for name in SCHEMA_NAMES:
        ours = codec.encode_avro(name, SAMPLES[name])[:10]
        assert bytes.fromhex(java[name]["header"]) == ours == MAGIC + codec.store.fingerprint_of(name), name
        assert f"(parsingFingerprint64 {java[name]['parsingFingerprint64']})" in describe_fingerprint(ours[2:])


def test_we_read_an_llmrequest_that_java_encoded(avro_java: AvroJava, tmp_path: Path):
    """An LLMRequest from BinaryMessageEncoder decodes with our codec (defaults filled), header in the spec's order."""
    data = avro_java.encode_request(tmp_path / "request.bin", "java-file-1", "Say hello", 7)
    codec = Codec()
    decoded = codec.decode("LLMRequest", data)
    assert data[:10] == MAGIC + codec.store.fingerprint_of("LLMRequest")
    assert (decoded["request_id"], decoded["prompt"], decoded["max_tokens"]) == ("java-file-1", "Say hello", 7)
    assert decoded["cache_policy"] == "use" and decoded["messages"] == [] and not codec.legacy_headers


def test_java_reads_every_schema_we_encode(avro_java: AvroJava, tmp_path: Path):
    """BinaryMessageDecoder reads our encoding of each schema (DeadLetter's raw bytes included) to the same record."""
    codec = Codec()
    files = []
    for name in SCHEMA_NAMES:
        path = tmp_path / f"{name}.bin"
        path.write_bytes(codec.encode_avro(name, SAMPLES[name]))
        files.append((name, path))
    decoded_by_java = avro_java.decode(files)
    for (name, path), java in zip(files, decoded_by_java, strict=True):
        assert java == as_java_prints(codec.decode(name, path.read_bytes())), name


@pytest.mark.kafka
def test_a_java_producer_gets_its_answer_decoded_by_a_java_consumer(avro_java: AvroJava, worker: WorkerProcess):
    """KafkaProducer + BinaryMessageEncoder send an LLMRequest to llm.requests.normal; the worker answers with
    the local model; KafkaConsumer + BinaryMessageDecoder read our LLMResult from llm.results."""
    settings, bootstrap = worker.settings, worker.settings.kafka.bootstrap_servers
    request_id = f"java-{uuid.uuid4()}"
    sent = avro_java.produce_request(bootstrap, settings.topic("llm.requests.normal"), request_id, f"Say hello ({request_id})", 8)
    try:
        result = avro_java.consume_result(bootstrap, settings.topic("llm.results"), request_id, timeout_s=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast lines of the worker's log:\n{worker.log_tail(20)}") from None
    assert (result["request_id"], result["status"], result["provider"]) == (request_id, "ok", "local")
    assert result["completion_tokens"] > 0 and result["prompt_tokens"] > 0
    assert (result["attempts"][0]["provider"], result["attempts"][0]["outcome"]) == ("local", "ok")
    assert bytes.fromhex(sent["header"]) == MAGIC + Codec().store.fingerprint_of("LLMRequest")
