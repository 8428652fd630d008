"""``--baseline echo`` from the load test's side: two temporary topics, the echo process between them,
and the :class:`~llmrouter.loadtest.kafka_run.Target` that drives it like the router.

The request topic has as many partitions as the router's request topics, the
result topic as many as ``llm.results``; both are created for the run (under
the settings' topic prefix) and deleted after it, whatever happens.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from llmrouter.wire.contract import PRIORITIES
from llmrouter.errors import RouterError
from llmrouter.loadtest import echo
from llmrouter.loadtest.kafka_run import Target
from llmrouter.loadtest.stats import Answer
from llmrouter.config.settings import Settings

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LABEL = "echo"


@dataclass(frozen=True)
class EchoBaseline:
    """The running echo: the target to load, and its process id (to measure its CPU)."""

    target: Target
    pid: int


def _read_echoed(key: bytes, value: bytes, headers: Any) -> tuple[str, Answer]:
    """An echoed record is the request itself: its key is the request_id, and it is an answer on the echo path."""
    return key.decode(), Answer(status="ok", route=LABEL)


@asynccontextmanager
async def echo_baseline(settings: Settings, run_id: str, *, linger_ms: float) -> AsyncIterator[EchoBaseline]:
    """Create the echo's topics, start the echo process and wait until it reads; stop and delete after."""
    kafka = settings.kafka
    requests = settings.topic(f"llmrouter.loadtest.{run_id}.requests")
    results = settings.topic(f"llmrouter.loadtest.{run_id}.results")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    proc: asyncio.subprocess.Process | None = None
    try:
        response = await admin.create_topics([NewTopic(requests, kafka.request_partitions, kafka.replication_factor),
                                              NewTopic(results, kafka.partitions, kafka.replication_factor)])
        for name, error_code, error_message in response.topic_errors:
            if error_code:
                raise RouterError(f"cannot create the echo baseline's topic {name}: {error_message} "
                                  f"(Kafka error {error_code})")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", echo.__name__, "--bootstrap", kafka.bootstrap_servers, "--source", requests,
            "--sink", results, "--linger-ms", str(linger_ms),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        await _wait_ready(proc)
        yield EchoBaseline(Target(LABEL, {p: requests for p in PRIORITIES}, results, _read_echoed), proc.pid)
        await _stop(proc)
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        try:
            await admin.delete_topics([requests, results])
        except KafkaError as exc:  # never hide the run's own outcome behind a cleanup failure
            print(f"llmrouter loadtest: could not delete {requests} and {results}: {exc!r}", file=sys.stderr)
        finally:
            await admin.close()


async def _wait_ready(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while line := (await proc.stdout.readline()).decode(errors="replace"):
                if line.strip() == echo.READY:
                    return
                seen.append(line.rstrip())
    except TimeoutError:
        raise RouterError(f"the echo baseline did not start within {READY_TIMEOUT_S:g}s: "
                          f"{' | '.join(seen[-5:]) or 'no output'}") from None
    raise RouterError(f"the echo baseline exited before it was ready: {' | '.join(seen[-5:]) or 'no output'}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM; an echo that failed (a delivery refused) or does not stop in time is an error."""
    proc.terminate()
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=STOP_TIMEOUT_S)
    except TimeoutError:
        raise RouterError(f"the echo baseline did not stop within {STOP_TIMEOUT_S:g}s") from None
    if proc.returncode not in (0, -15):
        tail = output.decode(errors="replace").strip().splitlines()[-3:]
        raise RouterError(f"the echo baseline failed (exit {proc.returncode}): {' | '.join(tail)}")
