"""Kafka writes whose durability is checked, not assumed.

faust's ``producer.flush()`` returns even when a send failed (the failure is
only logged), and a table write (``table[key] = value``) hands its changelog
record to a buffer and forgets it. Here every write awaits its own delivery
future, and :func:`with_retries` tries a failed write a bounded number of
times before its caller takes the dead-letter path.

A write that no retry can mend (:func:`is_permanent`: a record over the
producer's limit, a fence) is never tried again, by either: the error goes
to the caller at once, which writes something smaller (a truncated dead
letter, a refusal) instead of holding its slot and its commit for ever.

Table writes are size-checked before anything is written (:func:`write_now`),
and :class:`CheckedProducerBuffer` hands a send that fails in faust's
producer buffer to the write's future: faust's own buffer lets the error
escape its task and the worker dies.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
import structlog
from aiokafka.errors import (BrokerResponseError, MessageSizeTooLargeError, RecordListTooLargeError,
                             RecordTooLargeError)
from faust.transport.producer import ProducerBuffer
from faust.types import FutureMessage

from llmrouter.core.sizes import record_bytes
from llmrouter.errors import RecordTooLarge, RouterError, WriteFailed

log = structlog.get_logger("llmrouter.writes")
T = TypeVar("T")
FIRST_BACKOFF_S = 0.2
TOO_LARGE = (RecordTooLarge, MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


def is_permanent(exc: BaseException) -> bool:
    """Whether trying the same write again cannot help: the record is too large (ours or the client's or
    the broker's refusal), it cannot be encoded (ValueError, TypeError, OverflowError), the broker refused
    it with a non-retriable error, or one of our own errors says it is not retriable (a fence). A timeout,
    a lost connection, no broker, the producer stopping or a broker error that passes is not: those are
    retried (a dead letter is not given up on while the broker may come back)."""
    if isinstance(exc, RouterError):
        return isinstance(exc, RecordTooLarge) or (not exc.retriable and not isinstance(exc, WriteFailed))
    if isinstance(exc, TOO_LARGE) or isinstance(exc, ValueError | TypeError | OverflowError):
        return True
    return isinstance(exc, BrokerResponseError) and not exc.retriable


def check_record(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]], *, limit: int,
                 what: str) -> None:
    """Raise :class:`RecordTooLarge` when the record is over ``limit`` (the producer's max_request_size)."""
    size = record_bytes(key, value, headers)
    if size > limit:
        raise RecordTooLarge(f"{what} is {size} bytes with its key, headers and record overhead; the producer's "
                             f"limit (kafka.max_record_bytes) is {limit}", size=size, limit=limit)


def producer_limit(app: faust.App) -> int:
    """The producer's max_request_size: the one limit every size check reads (set from kafka.max_record_bytes)."""
    return int(app.conf.producer_max_request_size)


async def put_durably(table: faust.Table, key: Any, value: Any) -> None:
    """``table[key] = value``, returning once the broker has acknowledged the changelog record.

    Must run in the context of the event being processed (its partition is the
    table partition, as for faust's own writes).
    """
    await write_now(table, key, value)


def write_now(table: faust.Table, key: Any, value: Any) -> asyncio.Future:
    """``table[key] = value`` in RocksDB before returning; the future is its changelog record's ack.

    For a read-change-write that must not interleave with another (no await between the read and
    this call). Same event context rule as :func:`put_durably`. A record over the producer's limit raises
    :class:`RecordTooLarge` before anything is written, here or in RocksDB.
    """
    check_record(key, value, [], limit=producer_limit(table.app), what=f"a {table.name} table write")
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
    """Run ``write`` up to ``attempts`` times with doubling backoff; raise :class:`WriteFailed` after.

    A permanent error (:func:`is_permanent`) is raised as it is, at once."""
    for attempt in range(1, attempts + 1):
        try:
            return await write()
        except Exception as exc:  # any failed write: Kafka errors, timeouts, a closed producer
            if is_permanent(exc):
                raise
            if attempt == attempts:
                raise WriteFailed(f"{what} failed {attempts} time(s); last error: {exc!r}") from exc
            log.warning("write_retried", what=what, attempt=attempt, error=repr(exc))
            await asyncio.sleep(first_backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


async def until_written(write: Callable[[], Awaitable[T]], *, what: str, max_backoff_s: float = 5.0) -> T:
    """Run ``write`` until it succeeds (the last resort: a dead letter must not be lost).

    A permanent error (:func:`is_permanent`) is raised at once: the caller
    writes something smaller instead. Otherwise only cancellation (a drain,
    the worker stopping) ends it; the message is then not acked and is
    delivered again.
    """
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            return await write()
        except Exception as exc:
            if is_permanent(exc):
                log.error("write_refused", what=what, error=repr(exc))
                raise
            log.error("write_failing", what=what, retry_in_s=backoff, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


class CheckedProducerBuffer(ProducerBuffer):
    """faust's producer buffer (table changelogs, ``send_soon``), with a failed send handed to its future.

    faust's ``_handle_pending`` task awaits each send; a send that raises at once (a record over the
    producer's limit, a closed producer) escapes that task, which crashes the producer service and the
    worker with it, and the write's future is never resolved. Here the error becomes the future's, so the
    writer that awaits it (:func:`put_durably`) gets it, and the buffer goes on with the next record.
    """

    async def _send_pending(self, fut: FutureMessage) -> None:
        try:
            await super()._send_pending(fut)
        except Exception as exc:  # the send's own error: the writer decides, the buffer goes on
            log.error("buffered_send_failed", topic=str(fut.message.channel), error=repr(exc))
            if not fut.done():
                fut.set_exception(exc)
