"""The degradation flags and provider overrides on a worker: read whole before it
serves, then followed (F023, F055).

Every worker reads the compacted ``llm.router.flags`` with no consumer group
(:class:`~llmrouter.registry.reader.CompactedTopicReader`, as for
``llm.providers``): a flag is state each worker must know whatever partitions
it owns, and faust's GlobalTable has an open bug with several workers
(KAFKA.md). ``current`` is replaced whole by each record, so a request reads one
consistent :class:`~llmrouter.core.flag_state.FlagState`; the answer stage
applies it (:mod:`llmrouter.core.degrade`). A record that cannot be read is
logged and ignored, the state stays as it was.

:func:`write_change` is the one way a change is made, by the ``flags`` and
``override`` commands and by the admin view alike: the record, then its audit
event on ``llm.events``. The event comes from whoever makes the change, not
from the workers that see it: each change is then exactly one event however
many workers run (a worker publishing what it read would make one per
worker), it is there even when no worker runs, and it can say who asked and
through what. The record goes first: if the event then fails to be written
the change is in force and the command says the audit entry is missing,
rather than an event announcing a change that never happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import mode
import structlog

from llmrouter.core.flag_state import Change, FlagState
from llmrouter.errors import ConfigError
from llmrouter.registry.reader import CompactedTopicReader

log = structlog.get_logger("llmrouter.flags")

SendRecord = Callable[[str, bytes | None], Awaitable[Any]]  # (key, value or None); returns the record's metadata
SendEvent = Callable[[str, str, dict[str, str]], Awaitable[None]]  # (entity, kind, data)


async def write_change(change: Change, *, via: str, send_record: SendRecord, send_event: SendEvent) -> Any:
    """Write ``change`` to llm.router.flags, then its one audit event (``via`` says through what); the
    record's metadata (its offset) is returned."""
    written = await send_record(change.key, change.value)
    await send_event(change.entity, change.kind, {**change.data, "via": via})
    return written


class FlagsService(mode.Service):
    """Keeps the current :class:`FlagState` of one worker."""

    def __init__(self, *, bootstrap_servers: str, topic: str, catch_up_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reader = CompactedTopicReader(bootstrap_servers, topic)
        self._catch_up_timeout_s = catch_up_timeout_s
        self.current = FlagState()
        self.offset = -1  # of the last record read
        self._advanced = asyncio.Event()

    async def on_start(self) -> None:
        """Before the worker serves: a flag set while it was down holds from its first request."""
        await self._reader.start()
        if not await self._reader.read_to_end(self.apply, timeout_s=self._catch_up_timeout_s):
            log.warning("flags_catch_up_incomplete", timeout_s=self._catch_up_timeout_s)
        log.info("flags_ready", flags=sorted(self.current.flags),
                 overrides={p: o.action for p, o in self.current.overrides.items()})

    async def on_shutdown(self) -> None:
        """After mode has cancelled the follower."""
        await self._reader.stop()

    @mode.Service.task
    async def _follow(self) -> None:
        await self._reader.follow(self.apply)

    async def apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """One ``llm.router.flags`` record."""
        try:
            self.current = self.current.applied(key, value)
        except ConfigError as exc:
            log.warning("flags_record_refused", key=(key or b"").decode("utf-8", "replace"), offset=offset,
                        reason=str(exc))
        else:
            log.info("flags_record_applied", key=(key or b"").decode("utf-8", "replace"), cleared=value is None,
                     offset=offset)
        self.offset = offset
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def wait_applied(self, offset: int, *, timeout_s: float) -> bool:
        """Wait until the record at ``offset`` has been read; False if that took over ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.offset < offset:
                    await self._advanced.wait()
        except TimeoutError:
            return False
        return True
