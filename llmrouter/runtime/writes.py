"""Kafka writes whose durability is checked, not assumed.

faust's ``producer.flush()`` returns even when a send failed (the failure is
only logged), and a table write (``table[key] = value``) hands its changelog
record to a buffer and forgets it. Here every write awaits its own delivery
future, and :func:`with_retries` tries a failed write a bounded number of
times before its caller takes the dead-letter path.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
import structlog

from llmrouter.errors import WriteFailed

log = structlog.get_logger("llmrouter.writes")
T = TypeVar("T")
FIRST_BACKOFF_S = 0.2


async def put_durably(table: faust.Table, key: Any, value: Any) -> None:
    """``table[key] = value``, returning once the broker has acknowledged the changelog record.

    Must run in the context of the event being processed (its partition is the
    table partition, as for faust's own writes).
    """
    await write_now(table, key, value)


def write_now(table: faust.Table, key: Any, value: Any) -> asyncio.Future:
    """``table[key] = value`` in RocksDB before returning; the future is its changelog record's ack.

    For a read-change-write that must not interleave with another (no await between the read and
    this call). Same event context rule as :func:`put_durably`.
    """
    sent = table.send_changelog(table.partition_for_key(key), key, value)
    table.data[key] = value
    return sent


def put_soon(table: faust.Table, key: Any, value: Any, *, what: str) -> asyncio.Future:
    """``table[key] = value`` now in RocksDB; its changelog record is sent without waiting for it.

    For best-effort writes only (a result's delivered mark): the caller moves
    on (and acks) before the broker has the record, so a crash may lose it.
    A failed send is logged as ``{what}_lost``. Same event context rule as
    :func:`put_durably`.
    """
    sent = write_now(table, key, value)
    sent.add_done_callback(functools.partial(_log_if_lost, what))
    return sent


def _log_if_lost(what: str, sent: asyncio.Future) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.warning(f"{what}_lost", error=repr(sent.exception()))


async def with_retries(write: Callable[[], Awaitable[T]], *, what: str, attempts: int,
                       first_backoff_s: float = FIRST_BACKOFF_S) -> T:
    """Run ``write`` up to ``attempts`` times with doubling backoff; raise :class:`WriteFailed` after."""
    for attempt in range(1, attempts + 1):
        try:
            return await write()
        except Exception as exc:  # any failed write: Kafka errors, timeouts, a closed producer
            if attempt == attempts:
                raise WriteFailed(f"{what} failed {attempts} time(s); last error: {exc!r}") from exc
            log.warning("write_retried", what=what, attempt=attempt, error=repr(exc))
            await asyncio.sleep(first_backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


async def until_written(write: Callable[[], Awaitable[T]], *, what: str, max_backoff_s: float = 5.0) -> T:
    """Run ``write`` until it succeeds (the last resort: a dead letter must not be lost).

    Only cancellation (a drain, the worker stopping) ends it otherwise; the
    message is then not acked and is delivered again.
    """
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            return await write()
        except Exception as exc:
            log.error("write_failing", what=what, retry_in_s=backoff, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
