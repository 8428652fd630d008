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

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from llmrouter.infra import InfraError
from llmrouter.infra._process import tail
from llmrouter.infra.kafka import cache_root

INTEROP_DIR = Path(__file__).parent
POM = INTEROP_DIR / "pom.xml"
PROGRAM = INTEROP_DIR / "AvroInterop.java"
SCHEMAS_DIR = INTEROP_DIR.parents[1] / "schemas"  # the repository's .avsc files, as they are
MAVEN_TIMEOUT_S = 600.0
MAVEN_PROGRESS_EVERY_S = 15.0
JAVA_TIMEOUT_S = 120.0

Echo = Callable[[str], Any]


def resolve_jars(echo: Echo = print, *, timeout_s: float = MAVEN_TIMEOUT_S) -> Path:
    """The folder of the interop jars, copied from Maven Central on first use (bounded by ``timeout_s``)."""
    if shutil.which("java") is None:
        raise InfraError("Java 17+ runs the Avro interop tests: run `sudo apt-get install -y openjdk-17-jre-headless`.")
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    home = cache_root() / f"avro-interop-{pom_hash}"
    libs, marker = home / "libs", home / ".complete"
    if marker.is_file():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions at once resolve once
        if not marker.is_file():
            _copy_jars(home, echo, timeout_s)
    return libs


def _copy_jars(home: Path, echo: Echo, timeout_s: float) -> None:
    """Run ``mvn dependency:copy-dependencies`` into ``home/libs``, saying how it goes; mark it complete."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (`mvn`) resolves the Avro interop jars once: run `sudo apt-get install -y maven`.")
    shutil.copyfile(POM, home / "pom.xml")
    partial, libs, log_path = home / "libs.partial", home / "libs", home / "mvn.log"
    shutil.rmtree(partial, ignore_errors=True)
    echo(f"resolving the Avro interop jars (Apache Avro, kafka-clients) from Maven Central into {libs} "
         f"(first run only, at most {timeout_s:.0f} s) …")
    started = time.monotonic()
    cmd = [mvn, "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=home, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: a timeout stops Maven's JVM too
        while proc.poll() is None:
            if time.monotonic() - started > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise InfraError(f"mvn did not resolve the Avro interop jars within {timeout_s:.0f} s; "
                                 f"last lines of {log_path}:\n{tail(log_path)}")
            try:
                proc.wait(timeout=MAVEN_PROGRESS_EVERY_S)
            except subprocess.TimeoutExpired:
                echo(f"  … still resolving ({time.monotonic() - started:.0f} s)")
    if proc.returncode != 0:
        raise InfraError(f"mvn failed (exit {proc.returncode}) resolving the Avro interop jars; "
                         f"last lines of {log_path}:\n{tail(log_path)}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    jars = sorted(libs.glob("*.jar"))
    (home / ".complete").write_text("".join(f"{jar.name}\n" for jar in jars))
    echo(f"resolved {len(jars)} jars in {time.monotonic() - started:.1f} s")


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
