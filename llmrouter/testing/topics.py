"""Deleting the topics a test session or a benchmark made, so a broker kept running does not pile up partitions.

Its heap is bounded: thousands of leftover partitions slow every later run.
Cleanup only: a failure is printed, never raised, so it cannot fail a run
whose results stand without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient

from llmrouter.testing.settings_file import BOOTSTRAP

__all__ = ["delete_topics"]

BATCH = 100  # topics per delete request


def delete_topics(prefixes: Iterable[str], *, bootstrap: str = BOOTSTRAP) -> None:
    """Delete every topic whose name starts with one of ``prefixes`` (a worker's topic prefix, its app id + '-')."""
    asyncio.run(_delete(tuple(prefixes), bootstrap))


async def _delete(prefixes: tuple[str, ...], bootstrap: str) -> None:
    if not prefixes:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        for i in range(0, len(names), BATCH):
            await admin.delete_topics(names[i:i + BATCH])
    except Exception as exc:  # cleanup only: never fail a run over it
        print(f"could not delete the topics under {list(prefixes)}: {exc!r}")
    finally:
        await admin.close()
