"""The cost ledger and its budgets (F010, F014, F053), in the ``ledger`` table.

Each paid call is booked in the month's accounts: the provider's, the user's,
and the budget's that covers the provider (``premium_config.usage_limit``:
"$10/month" for every openai- and anthropic-kind provider and every
emergency-only one together, whatever their names: :meth:`Budget.covers`
reads the provider's spec). A budget refuses a call
*before* it is made: the call's estimated cost is reserved (durably, in the
table) and the reservation is settled with the real cost after the call, so
concurrent requests cannot overspend between the check and the booking.

Why per partition: the table is written by the answer agents, whose streams
are keyed by request_id, so a request's accounts live in its own partition
(faust writes a table in the partition of the event being processed, and a
worker reads only the partitions it owns). A budget is therefore held as
shares, one per partition of the accepted topics (DESIGN.md: "an explicit
share per partition"): with 4 partitions, $10/month is $2.50 per partition.
Whoever owns a partition owns its share, restored from the changelog after
a rebalance or a crash, and the shares never add up to more than the
budget. The cost of that exactness: a request is refused when its own
partition's share is spent, even if another partition's is not (request ids
spread evenly, so the shares run out together, within a few calls).

Reservations carry their time: one whose call never ended here (a drain
cancelled it after ``worker.revoke_grace_s``, its worker was killed) is
booked at its estimate when the request is delivered again (same id, same
partition) and reserves that provider again: the provider may have billed
it. One left while the request went to another provider meanwhile is
dropped after ``RESERVATION_TTL_S``. Calls to a provider no budget covers are
reserved in the provider's own account (never refused), so they are booked
the same way.

Each booking, and the first refusal of a budget's share in a period, is an
event on llm.events (:mod:`llmrouter.dispatch.ledger_audit`), from which
``llmrouter events replay --table ledger`` rebuilds the accounts.

The refresh-ahead of the cache runs outside any partition: it gets
:class:`FreeOnly`, and never calls a provider that costs money.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
import structlog

from llmrouter.core.ledger import Account, BudgetExceeded
from llmrouter.core.ledger_replay import Booking
from llmrouter.dispatch.ledger_audit import LedgerEvents
from llmrouter.providers.spec import ProviderSpec
from llmrouter.registry.reader import read_whole
from llmrouter.runtime.writes import WriteFailed, put_durably, with_retries, write_now

log = structlog.get_logger("llmrouter.ledger")
RESERVATION_TTL_S = 3600.0  # far longer than any request's deadline
_MONEY = re.compile(r"^\s*\$(\d+(?:\.\d+)?)\s*/\s*(day|month)\s*$")
_PERIOD_FORMAT = {"month": "%Y-%m", "day": "%Y-%m-%d"}


@dataclass(frozen=True)
class Budget:
    """A spending limit over every provider of some kinds (and, for the premium budget, every emergency-only
    provider), whatever the provider is named: a budget follows what a provider *is* (its spec), so an
    openai-kind provider registered as ``gpt-proxy`` is capped like ``openai``."""

    name: str  # "premium"
    usd: float  # per period, for the whole group of workers
    period: str  # "month" | "day"
    kinds: frozenset[str]  # provider kinds it covers, e.g. openai, anthropic
    emergency_only: bool = False  # it also covers every emergency-only provider

    @classmethod
    def parse(cls, name: str, limit: str, kinds: Iterable[str], *, emergency_only: bool = False) -> Budget:
        """``"$10/month"`` over the providers of ``kinds`` (and the emergency-only ones, if asked)."""
        match = _MONEY.match(limit)
        if not match:
            raise ValueError(f"{limit!r} is not a budget; write it like '$10/month'")
        return cls(name, float(match.group(1)), match.group(2), frozenset(kinds), emergency_only)

    def covers(self, spec: ProviderSpec) -> bool:
        """Whether calls to the provider of ``spec`` are paid from this budget."""
        return spec.kind in self.kinds or (self.emergency_only and spec.emergency_only)


def period_of(period: str, at_ms: int) -> str:
    """The UTC month (``2026-11``) or day (``2026-11-30``) of a timestamp."""
    return time.strftime(_PERIOD_FORMAT[period], time.gmtime(at_ms / 1000))


class Ledger:
    def __init__(self, table: faust.Table, budgets: Iterable[Budget], *, spec_of: Callable[[str], ProviderSpec | None],
                 partitions: int, write_attempts: int, now_ms: Callable[[], int],
                 events: LedgerEvents | None = None) -> None:
        self._table = table
        self._events = events
        self._budgets = tuple(budgets)
        self._spec_of = spec_of  # the registry's current spec of a provider name
        self._last_budget: dict[str, Budget | None] = {}  # by name: what covered it when it last had a spec
        self._partitions = partitions
        self._attempts = write_attempts
        self._now_ms = now_ms

    def spend(self, *, request_id: str, user_id: str | None, partition: int) -> LedgerSpend:
        """The :class:`~llmrouter.dispatch.dispatcher.Spend` of one request; call it only while its event is processed."""
        return LedgerSpend(self, request_id, user_id, partition)

    def accounts(self) -> dict[str, dict[str, Any]]:
        """Every account of the partitions this worker owns, by key (for views)."""
        return {key.decode(): json.loads(value) for key, value in self._table.data.items()}

    # -- used by LedgerSpend -------------------------------------------------------------------

    def budget_of(self, provider: str) -> Budget | None:
        """The budget that pays for calls to ``provider``, judged by its spec (kind, emergency_only), not its name.

        A provider removed from the registry while its call was under way keeps the budget it had, so the
        call it was reserved for is still settled against it."""
        spec = self._spec_of(provider)
        if spec is None:
            return self._last_budget.get(provider)
        budget = next((b for b in self._budgets if b.covers(spec)), None)
        self._last_budget[provider] = budget
        return budget

    def key(self, scope: str, name: str, period: str, partition: int) -> bytes:
        return f"{scope}:{name}:{period_of(period, self._now_ms())}:p{partition}".encode()

    def load(self, key: bytes, budget_usd: float | None = None) -> Account:
        raw = self._table.get(key)
        if raw is None:
            return Account(budget_usd=budget_usd)
        account = Account.from_dict(json.loads(raw))
        account.budget_usd = budget_usd  # the settings may have changed since it was written
        return account

    def share_of(self, budget: Budget) -> float:
        return budget.usd / self._partitions

    def write(self, key: bytes, account: Account) -> asyncio.Future:
        """Write ``account`` now (RocksDB at once, its changelog record sent); the future is the broker's ack.

        Now, not in a task started later: a task would let another request read the account first, and
        the two writes would each lose the other's booking.
        """
        value = json.dumps(account.to_dict(), separators=(",", ":")).encode()
        return write_now(self._table, key, value)

    async def confirm(self, key: bytes, sent: asyncio.Future) -> None:
        """Wait for the ack; a failed write is tried again with the account as it is *then* (never the value
        that failed, which may be older than another request's booking since)."""
        try:
            await sent
            return
        except Exception as exc:
            if self._attempts <= 1:
                raise WriteFailed(f"book a cost in the ledger failed: {exc!r}") from exc
        await with_retries(lambda: put_durably(self._table, key, self._table.get(key)),
                           what="book a cost in the ledger", attempts=self._attempts - 1)

    def now_s(self) -> float:
        return self._now_ms() / 1000.0

    async def booked(self, partition: int, booking: Booking) -> None:
        if self._events is not None:
            await self._events.booked(partition, booking)

    async def refused(self, key: bytes, account: Account, budget: Budget, *, request_id: str, provider: str,
                      reason: str) -> None:
        """A reservation was refused for ``budget``: the first refusal of this share in this period marks the
        account (written before any await, so a concurrent refusal sees the mark) and sends one event."""
        if account.exceeded or self._events is None:
            return
        account.exceeded = True
        sent = self.write(key, account)
        await self._events.budget_exceeded(budget.name, {
            "account": key.decode(), "period": budget.period, "budget_usd": repr(budget.usd),
            "share_usd": repr(self.share_of(budget)), "spent_usd": repr(account.spent_usd),
            "reserved_usd": repr(account.reserved_usd), "request_id": request_id, "provider": provider,
            "reason": reason})
        await self.confirm(key, sent)


class LedgerSpend:
    """One request's bookings. Each read-change-write of an account runs without an await in between (one
    event loop), so two requests of a partition never book from the same stale account.

    A paid call's estimate is reserved before it: in its budget's account if a budget covers the provider,
    else in the provider's own account (which never refuses). A reservation still held when the request
    reserves the same provider again is an earlier delivery's call that never ended here (a drain cancelled
    it after the grace period, its worker died): the provider may have billed it, so it is booked at its
    estimate first, and the new call reserves anew. Every call the provider may have billed is booked.
    """

    def __init__(self, ledger: Ledger, request_id: str, user_id: str | None, partition: int) -> None:
        self._ledger, self._request_id, self._user_id, self._partition = ledger, request_id, user_id, partition

    async def reserve(self, provider: str, estimate_usd: float) -> str | None:
        await self._book_unsettled(provider)
        budget = self._ledger.budget_of(provider)
        if budget is None:
            if estimate_usd > 0:  # nothing to refuse, but the call must be booked even if it never ends here
                key, account = self._held_account(provider)
                account.expire(self._ledger.now_s() - RESERVATION_TTL_S)
                account.reserve(self._rid(provider), estimate_usd, at_s=self._ledger.now_s())
                await self._ledger.confirm(key, self._ledger.write(key, account))
            return None
        key, account = self._budget_account(budget)
        now = self._ledger.now_s()
        account.expire(now - RESERVATION_TTL_S)
        try:
            account.reserve(self._rid(provider), estimate_usd, at_s=now)
        except BudgetExceeded as exc:
            share = self._ledger.share_of(budget)
            reason = (f"the {budget.name} budget of ${budget.usd:g}/{budget.period} is spent in this request's "
                      f"partition (${share:.4g} each): {exc}")
            await self._ledger.refused(key, account, budget, request_id=self._request_id, provider=provider,
                                       reason=reason)
            return reason
        await self._ledger.confirm(key, self._ledger.write(key, account))
        return None

    async def settle(self, provider: str, cost_usd: float) -> None:
        rid, sent, seqs = self._rid(provider), {}, {}
        budget = self._ledger.budget_of(provider)
        if budget is not None:
            key, account = self._budget_account(budget)
            account.settle(rid, cost_usd)
            sent[key], seqs[key.decode()] = self._ledger.write(key, account), account.calls
        scopes = [("provider", provider)] + ([("user", self._user_id)] if self._user_id and cost_usd > 0 else [])
        for scope, name in scopes:
            key = self._ledger.key(scope, name, "month", self._partition)
            account = self._ledger.load(key)
            if cost_usd > 0:
                account.settle(rid, cost_usd)
                sent[key], seqs[key.decode()] = self._ledger.write(key, account), account.calls
            elif rid in account.reserved:  # a call that cost nothing: its reservation goes, unbooked
                account.release(rid)
                sent[key] = self._ledger.write(key, account)
        booked = (self._ledger.booked(self._partition, Booking(self._request_id, provider, cost_usd, seqs))
                  if seqs else asyncio.sleep(0))  # the audit event goes with the table writes, not after them
        await asyncio.gather(booked, *(self._ledger.confirm(key, future) for key, future in sent.items()))

    async def release(self, provider: str) -> None:
        key, account = self._held_account(provider)
        if self._rid(provider) in account.reserved:
            account.release(self._rid(provider))
            await self._ledger.confirm(key, self._ledger.write(key, account))

    async def _book_unsettled(self, provider: str) -> None:
        """Book at its estimate a reservation of this request's call to ``provider`` that an earlier delivery
        left (see the class docstring)."""
        _key, account = self._held_account(provider)
        estimate = account.reserved.get(self._rid(provider))
        if estimate is None:
            return
        log.warning("unsettled_reservation_booked", request_id=self._request_id, provider=provider,
                    estimate_usd=estimate, reason="an earlier delivery's call never ended here: it may be paid")
        await self.settle(provider, estimate)

    def _held_account(self, provider: str) -> tuple[bytes, Account]:
        """The account that holds this request's reservations for ``provider``: its budget's, else its own."""
        budget = self._ledger.budget_of(provider)
        if budget is not None:
            return self._budget_account(budget)
        key = self._ledger.key("provider", provider, "month", self._partition)
        return key, self._ledger.load(key)

    def _budget_account(self, budget: Budget) -> tuple[bytes, Account]:
        key = self._ledger.key("budget", budget.name, budget.period, self._partition)
        return key, self._ledger.load(key, budget_usd=self._ledger.share_of(budget))

    def _rid(self, provider: str) -> str:
        return f"{self._request_id}/{provider}"


class FreeOnly:
    """The Spend of work outside any partition (the cache's refresh-ahead): only calls that cost nothing."""

    async def reserve(self, provider: str, estimate_usd: float) -> str | None:
        return None if estimate_usd <= 0 else "refresh-ahead calls no provider that costs money"

    async def settle(self, provider: str, cost_usd: float) -> None:
        return None

    async def release(self, provider: str) -> None:
        return None


async def read_all_accounts(bootstrap_servers: str, changelog: str) -> dict[str, dict[str, Any]]:
    """Every account of the group: the ledger table's changelog read whole, the last record of each key
    (a null value deletes its key). For ``llmrouter ledger --all`` and ``/ledger/?all=1``: any worker, or none,
    answers for every partition."""
    rows = await read_whole(bootstrap_servers, changelog)
    accounts = {key.decode("utf-8", "replace"): json.loads(value) for key, value in rows.items()}
    return dict(sorted(accounts.items()))
