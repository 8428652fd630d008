"""Delivering the answer stage's results, each write awaited before the next::

    store the answer (delivered=no) ─► dead letter, if the chain was exhausted
        ─► send the result ─► mark delivered (not awaited) ─► cache the answer ─► finish (count and log)

and re-emitting a stored answer for a request delivered again. Every final
outcome is stored, errors and timeouts too (a DLQ replay may still ask for a
new try: :func:`llmrouter.core.stored.re_emits`). A failed write is retried (``write_attempts``); a result that
cannot be delivered goes to the DLQ with an ``error`` result on
``llm.results``. The mark is best effort: losing it costs one more copy
without the replay header after a crash, never a lost or twice-paid request.

An answer whose result or stored copy would be over the producer's record
limit (a provider's huge text) is not sent as it is: it becomes an ``error``
result ``result_too_large`` (:func:`too_large_record`), stored like a final
answer, so a redelivery re-emits that instead of paying the provider again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from llmrouter.cache.service import ResponseCache
from llmrouter.core.stored import STATUSES, StoredAnswer
from llmrouter.errors import RequestError
from llmrouter.observability.finish import Finisher
from llmrouter.runtime.publisher import REPLAY_HEADER, Publisher
from llmrouter.runtime.writes import WriteFailed, put_durably, put_soon, until_written, with_retries
from llmrouter.wire.contract import Request, result_record
from llmrouter.wire.envelope import Origin

log = structlog.get_logger("llmrouter.answer")
STORED_STATUSES = STATUSES  # every final outcome: a redelivery re-emits it, never pays again
MAX_ERROR_CHARS = 4000  # a last-resort error result's message: whatever the failure said, the result fits a record
CACHED_ROUTES = frozenset({"local", "cloud"})  # answers a provider gave (never a cached one stored again)


class Decoder(Protocol):
    def decode(self, name: str, data: bytes) -> dict[str, Any]: ...


class Delivery:
    """The answer stage's writes: the ``answered`` table, the result and DLQ topics, the cache, the counts."""

    def __init__(self, *, answered: Any, publisher: Publisher, cache: ResponseCache, finish: Finisher,
                 codec: Decoder, write_attempts: int, window_s: float, now_ms: Callable[[], int]) -> None:
        self._answered = answered  # the faust table request_id -> StoredAnswer bytes
        self._publisher = publisher
        self._cache = cache
        self._finish = finish
        self._codec = codec  # reads a stored result back, to count its first delivery
        self._attempts = write_attempts
        self._window_s = window_s  # tables.idempotency_window_s
        self._now_ms = now_ms

    def stored(self, request_id: str) -> StoredAnswer | None:
        """The answer stored for ``request_id`` within the idempotency window, or None."""
        raw = self._answered.get(request_id.encode())
        if raw is None:
            return None
        try:
            stored = StoredAnswer.from_bytes(raw)
        except ValueError as exc:
            log.warning("stored_answer_unreadable", request_id=request_id, error=str(exc))
            return None
        if stored.expired(now_ms=self._now_ms(), window_s=self._window_s):
            return None
        return stored

    async def re_emit(self, request: Request, stored: StoredAnswer) -> None:
        """Send the stored result again, byte for byte; flagged as a replay once the first copy was delivered."""
        await with_retries(lambda: self._publisher.send_result(request.request_id, stored.result,
                                                               reply_to=request.reply_to, replay=stored.delivered),
                           what="re-emit a stored result", attempts=self._attempts)
        first_copy = not stored.delivered
        if first_copy:
            self._mark_delivered(request.request_id, stored)
        self._finish.replayed("answer", priority=request.priority, status=stored.status, first_copy=first_copy,
                              record=self._stored_record(stored) if first_copy else None)

    async def deliver(self, request: Request, origin: Origin, record: dict[str, Any],
                      dead_letter: Any | None) -> None:
        """Store, dead-letter (``dead_letter``: a :class:`~llmrouter.dispatch.serving.DeadLetter`), send, mark,
        cache, finish: in that order, each write awaited before the next."""
        rid = request.request_id
        data = self._publisher.encode_result(record)
        stored = StoredAnswer(result=data, status=record["status"], stored_at_ms=self._now_ms())
        store = stored.status in STORED_STATUSES
        if not self._fits(rid, stored):
            record = too_large_record(request, record, size=len(data), limit=self._publisher.max_record_bytes,
                                      now_ms=self._now_ms())
            log.error("result_too_large", request_id=rid, provider=record.get("provider"), size=len(data))
            data = self._publisher.encode_result(record)
            stored = StoredAnswer(result=data, status=record["status"], stored_at_ms=self._now_ms())
            store, dead_letter = True, None  # paid for: stored so a redelivery never pays again; no replay
        if store:
            await with_retries(lambda: put_durably(self._answered, rid.encode(), stored.to_bytes()),
                               what="store the answer", attempts=self._attempts)
        if dead_letter is not None:
            await with_retries(lambda: self._publisher.dead_letter(
                reason=dead_letter.reason, code=dead_letter.code, origin=origin, request_id=rid,
                attempts=dead_letter.attempts), what="dead-letter the request", attempts=self._attempts)
        try:
            await with_retries(lambda: self._publisher.send_result(rid, data, reply_to=request.reply_to),
                               what=f"send the result to {request.reply_to or self._publisher.results_topic}",
                               attempts=self._attempts)
        except WriteFailed as exc:
            await self._undeliverable(request, origin, exc)
            return
        if store:
            self._mark_delivered(rid, stored)
        self.cache_answer(request, record)
        self._finish.result("answer", record)

    def cache_answer(self, request: Request, record: dict[str, Any]) -> bool:
        """Keep a provider's good answer in the response cache, if the request's policy lets it be written."""
        if record["status"] != "ok" or record.get("route") not in CACHED_ROUTES or not self._cache.decide(request).write:
            return False
        return self._cache.store(request, record)  # False: a sampled answer its provider could not repeat

    async def last_resort(self, origin: Origin, request: Request | None, *, code: str, reason: str) -> None:
        """A request the handler failed on: its dead letter and (when its request_id is known) an ``error``
        result, each written until it is; the result is stored first, like every final outcome, unless an
        answer was stored before the failure (a redelivery then re-emits that one). It never raises (but for
        cancellation): a letter that no retry can write is written bare (:func:`write_bare_dead_letter`); an
        error result that no retry can send is logged, the letter written before it being what must not be
        lost."""
        request_id = request.request_id if request else None
        try:
            await until_written(lambda: self._publisher.dead_letter(reason=reason, code=code, origin=origin,
                                                                    request_id=request_id), what="dead-letter")
        except Exception as refused:
            await write_bare_dead_letter(self._publisher, origin, code=code,
                                         reason=f"{reason}; its dead letter was refused: {refused!r}")
            return
        if request is None:
            return
        rid = request.request_id
        try:
            record = result_record(request, status="error", now_ms=self._now_ms(), error_code=code,
                                   error_message=reason[:MAX_ERROR_CHARS])
            data = self._publisher.encode_result(record)
            await self._store_unless_answered(rid, StoredAnswer(result=data, status="error",
                                                                stored_at_ms=self._now_ms()))
            await until_written(lambda: self._publisher.send_result(rid, data, reply_to=request.reply_to),
                                what="send an error result")
        except Exception as refused:
            log.error("error_result_lost", request_id=request_id, code=code, error=repr(refused),
                      kept="the dead letter, written before it")
            return
        self._finish.result("answer", record, request_id=request_id)

    async def _store_unless_answered(self, request_id: str, stored: StoredAnswer) -> None:
        """Store a last-resort outcome, unless an answer is stored already; best effort: the table write may be
        what failed, and the letter is out, so a failure here is logged, not raised."""
        if self.stored(request_id) is not None:
            return
        try:
            await with_retries(lambda: put_durably(self._answered, request_id.encode(), stored.to_bytes()),
                               what="store the error result", attempts=self._attempts)
        except Exception as exc:
            log.warning("error_result_not_stored", request_id=request_id, error=repr(exc),
                        kept="the dead letter; a redelivery is served again")

    async def bare_dead_letter(self, origin: Origin, *, code: str, reason: str) -> None:
        """:func:`write_bare_dead_letter`, for a message that could not even be read for its dead letter."""
        await write_bare_dead_letter(self._publisher, origin, code=code, reason=reason)

    async def _undeliverable(self, request: Request, origin: Origin, exc: WriteFailed) -> None:
        """The result could not be sent: keep the request for a replay (its answer stays stored and is
        re-emitted then, not paid for again) and say so on llm.results."""
        reason = f"the result could not be delivered: {exc}"
        await until_written(lambda: self._publisher.dead_letter(reason=reason, code=exc.code, origin=origin,
                                                                request_id=request.request_id), what="dead-letter")
        record = result_record(request, status="error", now_ms=self._now_ms(), error_code=exc.code,
                               error_message=reason[:MAX_ERROR_CHARS])
        await until_written(lambda: self._publisher.result(record), what="send an error result")
        log.error("result_undeliverable", request_id=request.request_id, reply_to=request.reply_to, error=str(exc))
        self._finish.result("answer", record)

    def _fits(self, request_id: str, stored: StoredAnswer) -> bool:
        """Whether the result fits a record, re-emitted with the replay header too, and its stored copy a
        table write (both within the producer's limit)."""
        key = request_id.encode()
        return (self._publisher.fits(key, stored.result, [(REPLAY_HEADER, b"1")])
                and self._publisher.fits(key, stored.as_delivered().to_bytes()))

    def _mark_delivered(self, request_id: str, stored: StoredAnswer) -> None:
        """Best effort, not awaited: the result is out already, so losing the mark (a crash before
        its changelog record is written, a failed send) only means a later copy goes without the
        replay header (a duplicate), never that the request failed or is paid for again."""
        put_soon(self._answered, request_id.encode(), stored.as_delivered().to_bytes(), what="delivered_mark")

    def _stored_record(self, stored: StoredAnswer) -> dict[str, Any] | None:
        """The record of a stored answer's bytes, to count its first delivery; None (a replay only) if unreadable."""
        try:
            return self._codec.decode("LLMResult", stored.result)
        except RequestError as exc:
            log.warning("stored_result_unreadable", error=str(exc))
            return None


def too_large_record(request: Request, record: dict[str, Any], *, size: int, limit: int,
                     now_ms: int) -> dict[str, Any]:
    """The ``error`` result of an answer too large to send: who answered and what it cost, not the text."""
    who = record.get("provider") or "the provider"
    message = (f"the answer of {who} makes a result of {size} bytes, over the record limit of {limit} bytes "
               f"(kafka.max_record_bytes); it was not delivered and is not tried again")
    kept = {name: record[name] for name in ("provider", "model", "route", "prompt_tokens", "completion_tokens",
                                            "cost_usd") if record.get(name) is not None}
    return result_record(request, status="error", now_ms=now_ms, error_code="result_too_large",
                         error_message=message, **kept)


async def write_bare_dead_letter(publisher: Publisher, origin: Origin, *, code: str, reason: str) -> None:
    """A dead letter that needs nothing decoded: the original key, bytes and coordinates and the reason (no
    request_id, no headers, no result), for a message whose failure path failed too. Tried until written
    while its failures are retriable; one no retry can help is logged as ``dead_letter_lost`` and given up
    (the caller acks: the message stays at its offset of the source topic until the topic's retention)."""
    bare = dataclasses.replace(origin, headers=())
    safe_reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        await until_written(lambda: publisher.dead_letter(reason=safe_reason, code=code, origin=bare),
                            what="write a bare dead letter")
    except Exception as refused:
        log.error("dead_letter_lost", topic=origin.topic, partition=origin.partition, offset=origin.offset,
                  value_bytes=len(origin.value or b""), reason=safe_reason, error=repr(refused),
                  kept="the message stays at this offset of its source topic until the topic's retention")
