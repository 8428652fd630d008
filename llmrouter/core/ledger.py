"""Cost ledger and budgets (specification F010, F014, F053): pure.

One :class:`Account` per scope and month (``provider:openai``, ``user:alice``
...; the month in UTC, ``2026-11``): what was spent and what is reserved.
Before a call the caller *reserves* the estimated cost; the reservation is
refused when spent plus reserved plus it would pass the budget, so requests
answered concurrently cannot overspend between the check and the booking.
After the call the reservation is *settled* with the real cost (which may be
more than the estimate: it is booked all the same, the provider was paid) or
*released* when nothing was spent. An account with no budget never refuses.

Accounts are owned by one worker at a time (their table partition's owner),
which applies reserve, settle and release in order; :meth:`Account.to_dict`
and :meth:`Account.from_dict` carry the state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from llmrouter.errors import BudgetExceeded


def month_of(at_ms: int) -> str:
    """The UTC month of a timestamp: ``2026-11``."""
    return time.strftime("%Y-%m", time.gmtime(at_ms / 1000))


def account_key(scope: str, name: str, at_ms: int) -> str:
    """``provider:openai:2026-11``: the ledger's key for ``name`` in ``scope`` during that month."""
    if scope not in ("provider", "user"):
        raise ValueError(f"a ledger scope is 'provider' or 'user', not {scope!r}")
    return f"{scope}:{name}:{month_of(at_ms)}"


@dataclass
class Account:
    budget_usd: float | None = None  # None: no budget
    spent_usd: float = 0.0
    reserved: dict[str, float] = field(default_factory=dict)  # reservation id -> estimated cost
    calls: int = 0
    reserved_at: dict[str, float] = field(default_factory=dict)  # reservation id -> when it was made (s)
    exceeded: bool = False  # a reservation was refused for the budget (its audit event is sent once, not per request)

    @property
    def reserved_usd(self) -> float:
        return sum(self.reserved.values())

    def available_usd(self) -> float | None:
        """What may still be reserved (None: no budget)."""
        if self.budget_usd is None:
            return None
        return max(0.0, self.budget_usd - self.spent_usd - self.reserved_usd)

    def reserve(self, reservation_id: str, estimate_usd: float, *, at_s: float) -> None:
        """Hold ``estimate_usd`` for a call made at ``at_s`` (the caller's clock, seconds: what :meth:`expire`
        compares), or raise :class:`BudgetExceeded`. Reserving an id again is a no-op."""
        if estimate_usd < 0:
            raise ValueError(f"a cost estimate cannot be negative ({estimate_usd})")
        if reservation_id in self.reserved:
            return
        available = self.available_usd()
        if available is not None and estimate_usd > available:
            raise BudgetExceeded(
                f"${self.spent_usd:.4f} spent and ${self.reserved_usd:.4f} reserved of ${self.budget_usd:.2f}: "
                f"${estimate_usd:.4f} more would pass the budget")
        self.reserved[reservation_id] = estimate_usd
        self.reserved_at[reservation_id] = at_s

    def expire(self, before_s: float) -> list[str]:
        """Drop reservations made before ``before_s`` (their call's worker died and nobody settled them);
        the ids dropped. A request's deadline is far shorter than the age at which they are dropped."""
        stale = [rid for rid, at in self.reserved_at.items() if at < before_s]
        for rid in stale:
            self.release(rid)
        return stale

    def settle(self, reservation_id: str, actual_usd: float) -> None:
        """Book the call's real cost in place of its reservation (booked even without one: it was paid)."""
        self.release(reservation_id)
        self.spent_usd += max(0.0, actual_usd)
        self.calls += 1

    def release(self, reservation_id: str) -> None:
        """The call cost nothing (refused, failed before the provider took it): free its reservation."""
        self.reserved.pop(reservation_id, None)
        self.reserved_at.pop(reservation_id, None)

    def to_dict(self) -> dict[str, Any]:
        data = {"budget_usd": self.budget_usd, "spent_usd": self.spent_usd, "reserved": dict(self.reserved),
                "calls": self.calls, "reserved_at": dict(self.reserved_at)}
        if self.exceeded:  # absent when false: an account never refused reads as it did before the flag
            data["exceeded"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        return cls(budget_usd=data["budget_usd"], spent_usd=float(data["spent_usd"]),
                   reserved={k: float(v) for k, v in data["reserved"].items()}, calls=int(data["calls"]),
                   reserved_at={k: float(v) for k, v in data.get("reserved_at", {}).items()},
                   exceeded=bool(data.get("exceeded", False)))
