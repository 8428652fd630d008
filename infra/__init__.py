"""Local infrastructure for development and tests: one Kafka broker and one Redis.

The ``llmrouter infra up|down|status`` commands call the functions here.
``up`` leaves alone any Kafka or Redis that already answers; ``down`` stops
only what ``up`` started from the same state folder (pid files under
``<state_dir>/kafka`` and ``<state_dir>/redis``, default
``${LLMROUTER_STATE:-./var}``). Broker jars are cached in
``${LLMROUTER_CACHE:-~/.cache/llmrouter}`` (or taken from ``$KAFKA_HOME``).

Errors::

    InfraError     a service could not be started, reached or stopped
                   (declared in llmrouter.errors, in the one error tree)

This folder is installed as ``llmrouter.infra`` (``package-dir`` in
pyproject.toml maps it into the llmrouter namespace): import it as
``llmrouter.infra``; there is no ``llmrouter/infra/`` folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrouter.infra import kafka, redis
from llmrouter.infra.process import Echo, InfraError
from llmrouter.infra.kafka import wait_for_kafka
from llmrouter.infra.redis import wait_for_redis

__all__ = ["InfraError", "down", "status", "up", "wait_for_kafka", "wait_for_redis"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def up(
    *,
    bootstrap: str = DEFAULT_BOOTSTRAP,
    redis_url: str = DEFAULT_REDIS_URL,
    state_dir: Path | None = None,
    echo: Echo = print,
) -> None:
    """Make sure Kafka answers on ``bootstrap`` and Redis at ``redis_url``.

    Starts whichever does not answer yet (the KRaft controller listens on the
    bootstrap port + 1); safe to run again. Raises ``InfraError`` with the
    service's log tail if one cannot be started.
    """
    redis.up(url=redis_url, state_dir=state_dir, echo=echo)
    kafka.up(bootstrap=bootstrap, state_dir=state_dir, echo=echo)


def down(*, state_dir: Path | None = None, wipe: bool = False, echo: Echo = print) -> None:
    """Stop the Kafka and Redis that ``up`` started from ``state_dir``; nothing else.

    With ``wipe`` also delete their data (the broker's log dirs and cluster
    id, the Redis folder), so the next ``up`` starts from empty.
    """
    kafka.down(state_dir=state_dir, wipe=wipe, echo=echo)
    redis.down(state_dir=state_dir, wipe=wipe, echo=echo)


def status(
    *,
    bootstrap: str = DEFAULT_BOOTSTRAP,
    redis_url: str = DEFAULT_REDIS_URL,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    """Describe both services: running, started by llmrouter or not, pid, log (JSON-able)."""
    return {
        "kafka": kafka.status(bootstrap=bootstrap, state_dir=state_dir),
        "redis": redis.status(url=redis_url, state_dir=state_dir),
    }
