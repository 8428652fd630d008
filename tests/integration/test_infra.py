"""`llmrouter.infra` starts, reports and stops a local Kafka and Redis.

These tests use their own ports (Kafka 19192 + controller 19193, Redis 16399
and 16398) and temporary state folders, so they never touch the services a
developer or another test run keeps on 9092/6379 or 19092/19093. One broker is
started for the module; the last test stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmrouter import infra
from llmrouter.infra import InfraError, kafka, redis
from llmrouter.infra.process import poll_until

pytestmark = pytest.mark.kafka

BOOTSTRAP = "127.0.0.1:19192"
REDIS_URL = "redis://127.0.0.1:16399/0"
OWN_REDIS_PORT = 16398
OWN_REDIS_URL = f"redis://127.0.0.1:{OWN_REDIS_PORT}/0"


@dataclass
class Started:
    """The state folder `up` used and the messages it printed."""

    state: Path
    messages: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """Run `infra.up` once on the test ports; `down` whatever is left at the end."""
    assert not kafka.answers(BOOTSTRAP) and not redis.answers(REDIS_URL), (
        f"{BOOTSTRAP} or {REDIS_URL} is already in use; these tests need them free"
    )
    run = Started(tmp_path_factory.mktemp("infra-state"))
    infra.up(bootstrap=BOOTSTRAP, redis_url=REDIS_URL, state_dir=run.state, echo=run.messages.append)
    yield run
    infra.down(state_dir=run.state, wipe=True, echo=lambda _line: None)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server this test starts itself, outside `infra`."""
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(OWN_REDIS_PORT), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    assert poll_until(lambda: redis.answers(OWN_REDIS_URL), 10), "own redis-server did not start"
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def test_up_starts_kafka_and_redis_that_answer(started: Started) -> None:
    """`up` starts a broker that answers a metadata request and a Redis that answers PING."""
    assert kafka.answers(BOOTSTRAP)
    assert redis.answers(REDIS_URL)
    assert any(m.startswith("Kafka ready on 127.0.0.1:19192") for m in started.messages)
    assert any(m.startswith("Redis ready on 127.0.0.1:16399") for m in started.messages)
    assert (started.state / "kafka" / "kafka.pid").is_file()
    assert (started.state / "redis" / "redis.pid").is_file()


def test_up_twice_is_a_noop_that_says_already_running(started: Started) -> None:
    """A second `up` starts nothing, keeps the same pids and says both are already running."""
    pids = [(started.state / p).read_text() for p in ("kafka/kafka.pid", "redis/redis.pid")]
    messages: list[str] = []
    infra.up(bootstrap=BOOTSTRAP, redis_url=REDIS_URL, state_dir=started.state, echo=messages.append)
    assert [m for m in messages if "already running" in m and "started by llmrouter" in m] == messages
    assert len(messages) == 2
    assert [(started.state / p).read_text() for p in ("kafka/kafka.pid", "redis/redis.pid")] == pids


def test_status_reports_both_running_and_started_by_up(started: Started) -> None:
    """`status` says both run, were started by llmrouter, and gives pid, address and log."""
    report = infra.status(bootstrap=BOOTSTRAP, redis_url=REDIS_URL, state_dir=started.state)
    json.dumps(report)
    kafka_pid = int((started.state / "kafka" / "kafka.pid").read_text())
    assert report["kafka"] | {"log": None} == {
        "running": True, "started_by": "llmrouter", "pid": kafka_pid, "bootstrap": BOOTSTRAP,
        "log": None, "state_dir": str(started.state / "kafka"),
    }
    assert report["kafka"]["log"].endswith("kafka/logs/server.log")
    assert report["redis"]["running"] and report["redis"]["started_by"] == "llmrouter"
    assert report["redis"]["pid"] == int((started.state / "redis" / "redis.pid").read_text())


def test_down_leaves_alone_servers_it_did_not_start(
    started: Started, own_redis: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """`up` against servers that already answer adopts nothing; `down` then stops neither."""
    other_state = tmp_path / "other-state"
    messages: list[str] = []
    infra.up(bootstrap=BOOTSTRAP, redis_url=OWN_REDIS_URL, state_dir=other_state, echo=messages.append)
    assert len(messages) == 2 and all("not started by llmrouter" in m for m in messages)
    report = infra.status(bootstrap=BOOTSTRAP, redis_url=OWN_REDIS_URL, state_dir=other_state)
    assert report["kafka"]["started_by"] == report["redis"]["started_by"] == "external"

    infra.down(state_dir=other_state, echo=lambda _line: None)

    assert redis.answers(OWN_REDIS_URL) and own_redis.poll() is None
    assert kafka.answers(BOOTSTRAP)


def test_down_ignores_a_pid_file_naming_a_foreign_process(tmp_path: Path) -> None:
    """A pid file whose pid is not our broker or server is dropped, and that process is not signalled."""
    for pid_file in ("kafka/kafka.pid", "redis/redis.pid"):
        (tmp_path / pid_file).parent.mkdir(parents=True)
        (tmp_path / pid_file).write_text(f"{os.getpid()}\n")
    messages: list[str] = []
    infra.down(state_dir=tmp_path, echo=messages.append)
    assert all("no longer our" in m for m in messages) and len(messages) == 2
    assert not (tmp_path / "kafka" / "kafka.pid").exists()


def test_up_names_the_apt_command_when_redis_server_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `redis-server` on PATH, `up` fails with a message naming the install command."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("redis-server") is None
    with pytest.raises(InfraError, match=r"apt-get install -y redis-server"):
        redis.up(url="redis://127.0.0.1:16397/0", state_dir=tmp_path)


def test_down_stops_what_up_started_and_twice_is_harmless(started: Started) -> None:
    """`down --wipe` stops both services and deletes their data; a second `down` just says so."""
    infra.down(state_dir=started.state, wipe=True, echo=lambda _line: None)
    assert not kafka.answers(BOOTSTRAP) and not redis.answers(REDIS_URL)
    assert not (started.state / "kafka" / "kafka.pid").exists()
    assert not (started.state / "kafka" / "data").exists()

    messages: list[str] = []
    infra.down(state_dir=started.state, echo=messages.append)
    assert messages == [
        "Kafka: nothing started by llmrouter to stop",
        "Redis: nothing started by llmrouter to stop",
    ]
