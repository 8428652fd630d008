"""The owner's side of the windows: every worker's counts added up, the rules judged, alerts sent once.

``llm.router.outcomes`` is keyed by subject (``provider:together``, ``all``
...), so each subject's batches reach one worker of the group, the owner of
its partition, whose agent (agents/windows.py) hands each record here in the
record's event context; the tables are written in that partition, so faust
restores them on whoever owns it next, after a rebalance or a SIGKILL.

Why a plain table keyed by ``subject@window start`` rather than faust's
windowed tables (``app.Table(...).tumbling(60)``): faust picks the window of
a write from the event's timestamp, one window per event, while a batch holds
several windows (a flush that straddles a minute) and its outcomes' own times,
not the time it was sent; a faust hopping table stores every update once per
overlapping window, where the hopping spans the rules need are exact merges of
tumbling windows (:func:`~llmrouter.core.windows.span_starts`); the
idempotent add needs a read-change-write of the row with its marks, awaited
until its changelog record is acknowledged (:func:`~llmrouter.runtime.writes.put_durably`),
which faust's ``+=`` on a window does not offer; and faust's window expiry
has open bugs after a rebalance (faust #385). Here rows older than
``windows.retention_s`` are deleted by their owner, with a tombstone.

Judging: a *tick* (a record with no key, sent by the owner of the partition,
:mod:`.recorder`) makes the owner judge every subject of that partition, as
of the tick's time less one flush interval (the batches of that time are in
by then), after every record written before the tick. A tick older than
:data:`STALE_TICK_S` (an owner catching up after an outage) judges nothing:
alerts of the past are not sent late.

Sending an alert exactly once as far as a crash allows (a transactional
outbox): the new state and the records it makes are written to
``alert_state`` first, durably; then the records are sent; then the outbox is
cleared. A crash before the first write decides again (the same decision,
from the same windows); a crash between the send and the clear sends the
same record again, byte for byte (same ``at_ms``, ``since_ms`` and
fingerprint), never a new firing; an owner that takes over a firing alert
reads it from the changelog and sends nothing while it keeps firing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import lru_cache
from typing import Any

import faust
import structlog
from aiokafka.partitioner import murmur2

from llmrouter.core.alerts import AlertState, Policy, evaluate, parse_state_key, state_key
from llmrouter.core.windows import Aggregate, Batch, Row, apply_batch, parse_row_key, row_key
from llmrouter.runtime.writes import put_durably, with_retries
from llmrouter.runtime.clock import wall_ms

log = structlog.get_logger("llmrouter.windows")
STALE_TICK_S = 60.0
Publish = Callable[[dict[str, Any]], Awaitable[None]]


@lru_cache(maxsize=4096)
def partition_of(subject: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts ``subject``'s batches in (murmur2, as the Java client)."""
    return (murmur2(subject.encode()) & 0x7FFFFFFF) % partitions


class WindowOwner:
    def __init__(self, *, windows: faust.Table, states: faust.Table, policy: Policy | None, publish: Publish,
                 partitions: int, size_s: float, retention_s: float, flush_interval_s: float, write_attempts: int,
                 now_ms: Callable[[], int] = wall_ms) -> None:
        self._windows, self._states, self._policy, self._publish = windows, states, policy, publish
        self._partitions, self._attempts, self._now_ms = partitions, write_attempts, now_ms
        self._size_ms, self._retention_ms = round(size_s * 1000), round(retention_s * 1000)
        self._lag_ms = round(flush_interval_s * 1000)
        longest = policy.longest_window_s if policy else 0.0
        # the windows a judgement reads: the longest span, and the last few closed ones for the anomaly rules
        self._horizon_ms = round(longest * 1000) + 3 * self._size_ms + 3 * self._lag_ms
        self._last_tick: dict[int, int] = {}  # partition -> the latest tick judged (ticks from two owners interleave)
        self.latest: dict[bytes, AlertState] = {}  # every state as last judged here, value included (the views)

    async def handle(self, key: bytes | None, value: bytes | None, partition: int) -> None:
        """One record of llm.router.outcomes, in its event's context. Never raises: a record that cannot be
        read or written is logged and skipped (one batch fewer in the counts), the stream goes on."""
        try:
            if key is None:
                await self._tick(value or b"", partition)
            else:
                await self._add(key.decode("utf-8", "replace"), value or b"")
        except Exception:
            log.exception("windows_record_failed", partition=partition, key=key)

    # ---- counts --------------------------------------------------------------------------------------------------

    async def _add(self, subject: str, raw: bytes) -> None:
        try:
            batch = Batch.from_bytes(raw)
        except ValueError as exc:
            log.warning("windows_batch_unreadable", subject=subject, error=str(exc))
            return
        oldest = self._now_ms() - self._retention_ms
        for start, delta in sorted(batch.windows.items()):
            if start < oldest:
                continue  # expired already: a late batch does not bring a deleted window back
            key = row_key(subject, start)
            row = apply_batch(self._row(key), sender=batch.sender, seq=batch.seq, delta=delta)
            if row is not None:
                await self._put(self._windows, key, row.to_bytes(), "a window")

    def _row(self, key: bytes) -> Row | None:
        raw = self._windows.get(key)
        if raw is None:
            return None
        try:
            return Row.from_bytes(raw)
        except ValueError as exc:
            log.warning("windows_row_unreadable", key=key, error=str(exc))
            return None

    # ---- judging ---------------------------------------------------------------------------------------------------

    async def _tick(self, raw: bytes, partition: int) -> None:
        try:
            tick_ms = int(json.loads(raw)["tick_ms"])
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("windows_tick_unreadable", error=repr(exc))
            return
        if tick_ms <= self._last_tick.get(partition, 0):
            return
        self._last_tick[partition] = tick_ms
        now_ms = self._now_ms()
        windows, present, expired = self._windows_of(partition, now_ms)
        for key in expired:
            await self._delete(self._windows, key)
        if self._policy is None or now_ms - tick_ms > STALE_TICK_S * 1000:
            return
        as_of = tick_ms - self._lag_ms
        states = self._states_of(partition)
        for subject in sorted(set(windows) | set(states)):
            current = states.get(subject, {})
            for rule, (state, records) in evaluate(self._policy, subject, windows.get(subject, {}), current,
                                                   as_of).items():
                if rule in current and current[rule].judged_ms > as_of:
                    continue  # a tick delivered again after a takeover: its owner moved this alert later already
                await self._settle(state_key(rule, subject), current.get(rule), state, records)
            if subject not in present:  # no window left of it at all (a worker gone, a provider unused for long)
                for rule, state in current.items():
                    if state.status == "ok" and not state.outbox:
                        await self._delete(self._states, state_key(rule, subject))
                        self.latest.pop(state_key(rule, subject), None)

    def _windows_of(self, partition: int,
                    now_ms: int) -> tuple[dict[str, dict[int, Aggregate]], set[str], list[bytes]]:
        """The windows of ``partition``'s subjects a judgement reads, the subjects with any window retained,
        and the keys of the windows past retention."""
        recent, present, expired = {}, set(), []
        since, oldest = now_ms - self._horizon_ms, now_ms - self._retention_ms
        for key in list(_keys_of(self._windows, partition)):
            try:
                subject, start = parse_row_key(key)
            except ValueError:
                continue
            if partition_of(subject, self._partitions) != partition:
                continue
            if start < oldest:
                expired.append(key)
                continue
            present.add(subject)
            if start >= since and (row := self._row(key)) is not None:
                recent.setdefault(subject, {})[start] = row.aggregate
        return recent, present, expired

    def _states_of(self, partition: int) -> dict[str, dict[str, AlertState]]:
        out: dict[str, dict[str, AlertState]] = {}
        for key in list(_keys_of(self._states, partition)):
            try:
                rule, subject = parse_state_key(key)
                if partition_of(subject, self._partitions) == partition and (raw := self._states.get(key)):
                    out.setdefault(subject, {})[rule] = AlertState.from_bytes(raw)
            except ValueError as exc:
                log.warning("alert_state_unreadable", key=key, error=str(exc))
        return out

    async def _settle(self, key: bytes, old: AlertState | None, new: AlertState, records: list[dict]) -> None:
        """Write what changed; send new records through the outbox (see the module's docstring)."""
        self.latest[key] = new
        if records:
            new = replace(new, outbox=new.outbox + tuple(records))
        if not new.outbox:
            if _moved(old, new):
                await self._put(self._states, key, new.to_bytes(), "an alert state")
            return
        await self._put(self._states, key, new.to_bytes(), "an alert decided")
        for record in new.outbox:
            await self._publish(record)  # raises: the outbox stays, the next tick sends it
            log.info("alert_sent", rule=record["rule"], subject=record["subject"], state=record["state"],
                     severity=record["severity"], value=record["value"], fingerprint=record["fingerprint"])
        new = replace(new, outbox=())
        self.latest[key] = new
        await self._put(self._states, key, new.to_bytes(), "an alert sent")

    async def _put(self, table: faust.Table, key: bytes, value: bytes, what: str) -> None:
        await with_retries(lambda: put_durably(table, key, value), what=f"write {what}", attempts=self._attempts)

    async def _delete(self, table: faust.Table, key: bytes) -> None:
        """Delete a row and tombstone it in its changelog (same event context rule as put_durably)."""
        sent = table.send_changelog(table.partition_for_key(key), key, None, value_serializer="raw")
        del table.data[key]
        await sent


def _keys_of(table: faust.Table, partition: int) -> list[bytes]:
    """The keys of the partitions this worker owns, ``partition``'s among them for sure.

    faust's RocksDB store iterates only the partition databases it has opened, and it opens one when it
    is newly assigned or first read in an event of that partition: a partition this worker held as a
    standby replica and now owns (a takeover) stays unopened, and so unseen by an iteration, until then.
    The tick is such an event, so its partition's database is opened here first.
    """
    open_db = getattr(table.data, "_db_for_partition", None)  # faust's RocksDB store; the memory store has none
    if open_db is not None:
        open_db(partition)
    return list(table.data.keys())


def _moved(old: AlertState | None, new: AlertState) -> bool:
    """A change worth a changelog record: anything but the figure last judged and when."""
    if old is None:
        return new.status != "ok" or new.detector is not None
    return replace(old, value=None, threshold=None, judged_ms=0) != replace(new, value=None, threshold=None,
                                                                            judged_ms=0)
