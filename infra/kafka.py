"""A local single-node KRaft Kafka broker for development and tests.

``up`` starts a broker (combined broker + controller, static quorum) from the
Apache jars, ``down`` stops it, ``status`` describes it. A broker that
already answers on the bootstrap address is used as it is and never stopped:
``down`` only stops the process whose pid ``up`` wrote, after checking that
the pid still belongs to a ``kafka.Kafka`` JVM running our config.

Where things live:

- jars: ``$KAFKA_HOME/libs`` when ``KAFKA_HOME`` is set, else resolved once
  with Maven from ``kafka/pom.xml`` into
  ``${LLMROUTER_CACHE:-~/.cache/llmrouter}/kafka-<version>/libs``;
- state: ``<state_dir>/kafka/{server.properties,cluster.id,data,logs,kafka.pid}``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from llmrouter.infra import maven
from llmrouter.infra.maven import cache_root
from llmrouter.infra.process import (
    Echo,
    InfraError,
    default_state_dir,
    is_local_host,
    live_process,
    poll_until,
    port_open,
    read_pid,
    run_sync,
    spawn_detached,
    split_host_port,
    stop_process,
    stop_started,
    tail,
    write_pid,
)

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MAVEN_TIMEOUT_S = 900.0
JVM_OPTS = ["-Xmx1g", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
_PACKAGE_DIR = Path(__file__).parent / "kafka"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class KafkaState:
    """The files of one local broker under ``<state_dir>/kafka``."""

    root: Path

    @classmethod
    def under(cls, state_dir: Path | None) -> KafkaState:
        """Return the layout below ``state_dir`` (default ``$LLMROUTER_STATE`` or ``./var``)."""
        return cls((state_dir or default_state_dir()).resolve() / "kafka")

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "stdout.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"


# --- probing -----------------------------------------------------------------


def answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """Tell whether a Kafka broker on ``bootstrap`` answers a metadata request."""
    host, port = split_host_port(bootstrap, 9092)
    if not port_open(host, port):
        return False
    return run_sync(_metadata_lists_brokers(host, port, timeout_s))


async def _metadata_lists_brokers(host: str, port: int, timeout_s: float) -> bool:
    """Send one MetadataRequest and check the reply names at least one broker."""
    timeout_ms = int(timeout_s * 1000)
    try:
        conn = await create_conn(host, port, request_timeout_ms=timeout_ms)
    except (OSError, KafkaError, TimeoutError):
        return False
    try:
        reply = await conn.send(MetadataRequest([]))
        return bool(reply.brokers)
    except (OSError, KafkaError, TimeoutError):
        return False
    finally:
        conn.close()


def wait_for_kafka(bootstrap: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Block until a broker answers on ``bootstrap``; raise ``InfraError`` on timeout."""
    if not poll_until(lambda: answers(bootstrap), timeout_s):
        raise InfraError(f"No Kafka broker answered on {bootstrap} within {timeout_s:.0f} s.")


# --- jars --------------------------------------------------------------------


def kafka_version(pom: Path = _PACKAGE_DIR / "pom.xml") -> str:
    """Read the Kafka version pinned in the shipped pom."""
    version = ET.parse(pom).getroot().findtext("m:properties/m:kafka.version", namespaces=_POM_NS)
    if not version:
        raise InfraError(f"{pom} does not set <kafka.version>.")
    return version.strip()


def runtime(echo: Echo = print) -> tuple[str, Path]:
    """Return the broker's class path and log4j2 config, resolving jars if needed."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not libs.is_dir():
            raise InfraError(f"KAFKA_HOME={home} has no libs/ folder; unset it to use Maven.")
        configs = [Path(home) / "config" / f"log4j2.{ext}" for ext in ("yaml", "yml", "properties", "xml")]
        log4j = next((c for c in configs if c.is_file()), _PACKAGE_DIR / "log4j2.properties")
        return f"{libs}/*", log4j
    return f"{resolve_jars(echo)}/*", _PACKAGE_DIR / "log4j2.properties"


def resolve_jars(echo: Echo = print) -> Path:
    """Copy the broker's jars from Maven into the cache once; return the libs folder."""
    version = kafka_version()
    return maven.resolve_jars(_PACKAGE_DIR / "pom.xml", cache_root() / f"kafka-{version}",
                              what=f"Kafka {version} jars (~45 MB)", timeout_s=MAVEN_TIMEOUT_S, echo=echo)


# --- up / down / status ------------------------------------------------------


def server_properties(host: str, port: int, controller_port: int, data: Path) -> str:
    """Render a combined broker+controller config with a static one-voter quorum."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }
    header = "# Written by `llmrouter infra up`; rewritten on every start.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def our_broker(state: KafkaState) -> psutil.Process | None:
    """Return the live broker process ``up`` started from ``state``, else ``None``."""
    proc = live_process(read_pid(state.pid_file))
    if proc is None:
        return None
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return None
    if "kafka.Kafka" in cmdline and str(state.config) in cmdline:
        return proc
    return None


def up(
    *,
    bootstrap: str = "127.0.0.1:9092",
    controller_port: int | None = None,
    state_dir: Path | None = None,
    echo: Echo = print,
) -> None:
    """Make sure a broker answers on ``bootstrap``, starting one if none does."""
    state = KafkaState.under(state_dir)
    host, port = split_host_port(bootstrap, 9092)
    ours = our_broker(state)
    if answers(bootstrap):
        who = f"started by llmrouter, pid {ours.pid}" if ours else "not started by llmrouter; left alone"
        echo(f"Kafka already running on {bootstrap} ({who})")
        return
    if ours is not None:
        echo(f"Kafka (pid {ours.pid}) is starting; waiting for {bootstrap} …")
        _await_ready(state, bootstrap, ours.pid, time.monotonic(), echo)
        return
    _check_can_start(host, port, controller_port or port + 1, bootstrap)
    _start(state, host, port, controller_port or port + 1, echo)


def _check_can_start(host: str, port: int, controller_port: int, bootstrap: str) -> None:
    """Refuse to start when the ports are taken or the host is not this machine."""
    if port_open(host, port):
        raise InfraError(f"Something listens on {bootstrap} but does not answer as a Kafka broker.")
    if not is_local_host(host):
        raise InfraError(f"No Kafka answers on {bootstrap}, and only a local broker can be started.")
    if port_open(host, controller_port):
        raise InfraError(f"The KRaft controller port {host}:{controller_port} is already in use.")
    if shutil.which("java") is None:
        raise InfraError(
            "Java 17+ is needed to run Kafka: run `sudo apt-get install -y openjdk-17-jre-headless`."
        )


def _start(state: KafkaState, host: str, port: int, controller_port: int, echo: Echo) -> None:
    """Write the config, format storage if new, start the JVM and wait for it."""
    classpath, log4j = runtime(echo)
    java = ["java", *JVM_OPTS, "-cp", classpath,
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={state.logs}"]
    state.logs.mkdir(parents=True, exist_ok=True)
    state.config.write_text(server_properties(host, port, controller_port, state.data))
    if not (state.data / "meta.properties").is_file():
        _format(state, java)
    started = time.monotonic()
    cmd = [*java, "kafka.Kafka", str(state.config)]
    proc = spawn_detached(cmd, log_path=state.stdout_log, cwd=state.root)
    write_pid(state.pid_file, proc.pid)
    echo(f"starting Kafka on {host}:{port} (pid {proc.pid}, log {state.server_log}) …")
    _await_ready(state, f"{host}:{port}", proc.pid, started, echo)


def _format(state: KafkaState, java: list[str]) -> None:
    """Format the KRaft storage with this state's cluster id (idempotent)."""
    if not state.cluster_id_file.is_file():
        state.cluster_id_file.write_text(_random_cluster_id() + "\n")
    cluster_id = state.cluster_id_file.read_text().strip()
    cmd = [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
           "-c", str(state.config), "--ignore-formatted"]
    result = subprocess.run(cmd, cwd=state.root, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise InfraError(f"Formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def _random_cluster_id() -> str:
    """Return a Kafka cluster id: 16 random bytes, URL-safe base64, never leading '-'."""
    while True:
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _await_ready(state: KafkaState, bootstrap: str, pid: int, started: float, echo: Echo) -> None:
    """Wait for the broker to answer; on death or timeout stop it and raise with the log."""
    remaining = READY_TIMEOUT_S - (time.monotonic() - started)
    ready = poll_until(lambda: live_process(pid) is None or answers(bootstrap), max(remaining, 1.0))
    if ready and live_process(pid) is not None:
        echo(f"Kafka ready on {bootstrap} in {time.monotonic() - started:.1f} s")
        return
    proc = live_process(pid)
    reason = "exited" if proc is None else f"did not answer within {READY_TIMEOUT_S:.0f} s"
    if proc is not None:
        stop_process(proc, term_timeout_s=10)
    state.pid_file.unlink(missing_ok=True)
    raise InfraError(
        f"Kafka on {bootstrap} {reason}.\n--- {state.server_log} ---\n{tail(state.server_log)}"
        f"\n--- {state.stdout_log} ---\n{tail(state.stdout_log, 20)}"
    )


def down(*, state_dir: Path | None = None, wipe: bool = False, echo: Echo = print) -> None:
    """Stop the broker ``up`` started from ``state_dir`` (only that one); optionally wipe data."""
    state = KafkaState.under(state_dir)
    stop_started("Kafka", state.pid_file, our_broker(state), echo, term_timeout_s=STOP_TIMEOUT_S)
    if wipe:
        shutil.rmtree(state.data, ignore_errors=True)
        state.cluster_id_file.unlink(missing_ok=True)
        echo(f"Kafka: wiped {state.data}")


def status(*, bootstrap: str = "127.0.0.1:9092", state_dir: Path | None = None) -> dict[str, Any]:
    """Describe the broker on ``bootstrap`` and whether ``up`` started it (JSON-able)."""
    state = KafkaState.under(state_dir)
    ours = our_broker(state)
    running = answers(bootstrap)
    started_by = "llmrouter" if ours else ("external" if running else None)
    return {
        "running": running,
        "started_by": started_by,
        "pid": ours.pid if ours else None,
        "bootstrap": bootstrap,
        "log": str(state.server_log),
        "state_dir": str(state.root),
    }

