"""The cost ledger's audit events on ``llm.events`` (F017): each booking, and a budget's first refusal.

The events are what ``llmrouter events replay --table ledger`` rebuilds the
accounts from (:mod:`llmrouter.core.ledger_replay` says what a booking holds
and why). A booking's event is keyed ``ledger:p<partition>``, so the
bookings of one ledger partition stay in order on one partition of
llm.events. A refusal for the budget is keyed ``budget:<name>`` and sent once
per share and period (:meth:`llmrouter.dispatch.budgets.Ledger.refused` keeps the mark
in the account), not once per refused request: a spent budget refuses every
request after it, and the topic would fill with the same news.

The ledger table is the ledger; its events are its record. A failed event
write is tried ``write_attempts`` times, then logged (``ledger_event_lost``),
and the call it records goes on: the request was served and paid for, and
the replay names the booking it cannot find.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from llmrouter.core.ledger_replay import BOOKED, BUDGET_EXCEEDED, Booking, booking_entity
from llmrouter.errors import RecordTooLarge
from llmrouter.runtime.writes import WriteFailed, with_retries

log = structlog.get_logger("llmrouter.ledger")

SendEvent = Callable[[str, str, dict[str, str]], Awaitable[None]]  # (entity, kind, data): Publisher.event


class LedgerEvents:
    def __init__(self, send: SendEvent, *, write_attempts: int) -> None:
        self._send = send
        self._attempts = write_attempts

    async def booked(self, partition: int, booking: Booking) -> None:
        await self._write(booking_entity(partition), BOOKED, booking.to_data())

    async def budget_exceeded(self, budget: str, data: dict[str, str]) -> None:
        log.warning("budget_exceeded", budget=budget, **data)
        await self._write(f"budget:{budget}", BUDGET_EXCEEDED, data)

    async def _write(self, entity: str, kind: str, data: dict[str, str]) -> None:
        try:
            await with_retries(lambda: self._send(entity, kind, data), what=f"write the {kind} event",
                               attempts=self._attempts)
        except (WriteFailed, RecordTooLarge) as exc:  # lost, logged: never the request's failure
            log.error("ledger_event_lost", entity=entity, kind=kind, error=str(exc), **data)
