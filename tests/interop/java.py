"""Run ``AvroInterop.java`` (Apache Avro's and Kafka's Java libraries) from the tests.

The jars are resolved once per machine with Maven from ``pom.xml`` beside
this file into ``${LLMROUTER_CACHE:-~/.cache/llmrouter}/avro-interop-<hash of
the pom>/libs`` (the way ``llmrouter infra`` resolves the broker's jars), so a
changed pom resolves again and nothing lands in the repository. The program
itself runs with Java 17's single-file source launcher: no build step.

Errors::

    InfraError        Maven or Java is missing, or Maven failed or took too long
    AssertionError    the Java program failed (its stderr is in the message)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from llmrouter.infra import InfraError, maven
from llmrouter.infra.maven import cache_root

INTEROP_DIR = Path(__file__).parent
POM = INTEROP_DIR / "pom.xml"
PROGRAM = INTEROP_DIR / "AvroInterop.java"
SCHEMAS_DIR = INTEROP_DIR.parents[1] / "schemas"  # the repository's .avsc files, as they are
MAVEN_TIMEOUT_S = 600.0
JAVA_TIMEOUT_S = 120.0

Echo = Callable[[str], Any]


def resolve_jars(echo: Echo = print, *, timeout_s: float = MAVEN_TIMEOUT_S) -> Path:
    """The folder of the interop jars, copied from Maven Central on first use (bounded by ``timeout_s``)."""
    if shutil.which("java") is None:
        raise InfraError("Java 17+ runs the Avro interop tests: run `sudo apt-get install -y openjdk-17-jre-headless`.")
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return maven.resolve_jars(POM, cache_root() / f"avro-interop-{pom_hash}",
                              what="Avro interop jars (Apache Avro, kafka-clients)", timeout_s=timeout_s, echo=echo)


class AvroJava:
    """The commands of ``AvroInterop.java``, each run in a JVM of its own; JSON lines come back parsed."""

    def __init__(self, libs: Path) -> None:
        self.libs = libs

    def run(self, *args: str, timeout_s: float = JAVA_TIMEOUT_S) -> list[dict[str, Any]]:
        """Run one command; return its stdout's JSON lines, or fail with its exit status and stderr."""
        cmd = ["java", "-cp", f"{self.libs}/*", str(PROGRAM), args[0], str(SCHEMAS_DIR), *args[1:]]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            raise AssertionError(f"AvroInterop {args[0]} did not finish within {timeout_s:g} s; "
                                 f"stderr:\n{stderr}") from exc
        if done.returncode != 0:
            raise AssertionError(f"AvroInterop {args[0]} exited {done.returncode}; stderr:\n{done.stderr.strip()}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def headers(self) -> dict[str, dict[str, Any]]:
        """Per schema name: the header BinaryMessageEncoder writes (hex) and parsingFingerprint64."""
        return {line["schema"]: line for line in self.run("headers")}

    def encode_request(self, out: Path, request_id: str, prompt: str, max_tokens: int) -> bytes:
        """An LLMRequest encoded by BinaryMessageEncoder (written to ``out``); its bytes."""
        self.run("encode", str(out), request_id, prompt, str(max_tokens))
        return out.read_bytes()

    def decode(self, files: Iterable[tuple[str, Path]]) -> list[dict[str, Any]]:
        """Each (schema name, file) decoded by BinaryMessageDecoder, in order."""
        return self.run("decode", *[str(part) for pair in files for part in pair])

    def produce_request(self, bootstrap: str, topic: str, request_id: str, prompt: str, max_tokens: int) -> dict:
        """Produce an LLMRequest (BinaryMessageEncoder) with a KafkaProducer; where it went and its header."""
        return self.run("produce", bootstrap, topic, request_id, prompt, str(max_tokens))[0]

    def consume_result(self, bootstrap: str, topic: str, request_id: str, timeout_s: float) -> dict[str, Any]:
        """The LLMResult keyed ``request_id`` on ``topic``, read by a KafkaConsumer, decoded by BinaryMessageDecoder."""
        return self.run("consume", bootstrap, topic, request_id, str(timeout_s), timeout_s=timeout_s + 60)[0]
