"""The cost ledger rebuilt from its audit trail on ``llm.events`` (F017). Pure.

Every booking (:meth:`~llmrouter.core.ledger.Account.settle`) is one
``ledger_booked`` event: the request, the provider, the cost and, for each
account it was booked in (the budget's share, the provider's, the user's), its
sequence number there, the account's ``calls`` after it. One event per paid
call rather than one per account or a batch per interval: a booking touches
up to three accounts at once and is one fact, and an event per call is
written alongside the call's own table writes (no added wait, and nothing
held in memory that a crash would lose, as a batch would be).

Why the sequence numbers: an account's spend is a sum of floats, and float
addition depends on its order. Folding each account's bookings in the order
of their sequence numbers repeats the live ledger's additions exactly, so the
rebuilt figures equal the live ones to the last bit, whatever order the
events were read in. A number missing from an account's run is a booking
whose event is not there (written before llm.events' retention, or lost with
a crash between the table write and the event): :class:`Rebuilt` names them.
Two events with the same account and number (a worker died after sending
one, and its booking was made again by the next owner) are read in log
order: the later one is the booking the table kept.

Reservations are not in the trail: they live for the length of one call, and
a ledger at rest holds none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmrouter.core.ledger import Account

BOOKED = "ledger_booked"  # Event.kind of a booking
BUDGET_EXCEEDED = "budget_exceeded"  # Event.kind of the first refusal of a budget's share in a period
ACCOUNT = "account:"  # prefix of a booking's per-account entries in Event.data: "account:<key>" -> "<seq>"


def booking_entity(partition: int) -> str:
    """Event.entity (and Kafka key) of a booking: every booking of a ledger partition in one ordered log."""
    return f"ledger:p{partition}"


@dataclass(frozen=True)
class Booking:
    """One settled call: ``cost_usd`` booked in each account of ``seqs`` (account key -> its calls after it)."""

    request_id: str
    provider: str
    cost_usd: float
    seqs: Mapping[str, int]

    def to_data(self) -> dict[str, str]:
        """Event.data: strings only (an Avro map of strings); ``repr`` keeps the float exact."""
        data = {"request_id": self.request_id, "provider": self.provider, "cost_usd": repr(float(self.cost_usd))}
        data.update({f"{ACCOUNT}{key}": str(seq) for key, seq in self.seqs.items()})
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> Booking:
        """ValueError when ``data`` is not a booking's."""
        try:
            seqs = {key[len(ACCOUNT):]: int(value) for key, value in data.items() if key.startswith(ACCOUNT)}
            booking = cls(data["request_id"], data["provider"], float(data["cost_usd"]), seqs)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"not a ledger booking: {dict(data)!r:.200}") from exc
        if not seqs or min(seqs.values()) < 1:
            raise ValueError(f"a ledger booking names no account, or a sequence number below 1: {dict(data)!r:.200}")
        return booking


@dataclass
class Rebuilt:
    """The accounts as the bookings make them (``spent_usd``, ``calls`` by account key)."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    bookings: int = 0
    unreadable: int = 0  # ledger_booked events that could not be read
    missing: dict[str, list[int]] = field(default_factory=dict)  # account -> sequence numbers with no event


def rebuild_accounts(events: Iterable[tuple[str, Mapping[str, str]]]) -> Rebuilt:
    """Fold ``(kind, data)`` events, in log order, into accounts; other kinds are passed over."""
    costs: dict[str, dict[int, float]] = {}  # account -> seq -> cost
    rebuilt = Rebuilt()
    for kind, data in events:
        if kind != BOOKED:
            continue
        try:
            booking = Booking.from_data(data)
        except ValueError:
            rebuilt.unreadable += 1
            continue
        rebuilt.bookings += 1
        for key, seq in booking.seqs.items():
            costs.setdefault(key, {})[seq] = booking.cost_usd  # the same seq again: the later booking stands
    for key in sorted(costs):
        account = Account()
        for seq in sorted(costs[key]):
            account.settle("", costs[key][seq])
        rebuilt.accounts[key] = {"spent_usd": account.spent_usd, "calls": account.calls}
        gaps = [seq for seq in range(1, max(costs[key]) + 1) if seq not in costs[key]]
        if gaps:
            rebuilt.missing[key] = gaps
    return rebuilt


def compare(rebuilt: Mapping[str, Mapping[str, Any]], live: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Accounts whose spend or calls differ, exactly (an account absent on one side counts as empty there);
    [] when the rebuilt ledger is the live one."""
    empty = {"spent_usd": 0.0, "calls": 0}
    differences = []
    for key in sorted(set(rebuilt) | set(live)):
        mine, theirs = rebuilt.get(key, empty), live.get(key, empty)
        if (mine["spent_usd"], mine["calls"]) != (theirs["spent_usd"], theirs["calls"]):
            differences.append({"account": key,
                                "rebuilt": {"spent_usd": mine["spent_usd"], "calls": mine["calls"]},
                                "live": {"spent_usd": theirs["spent_usd"], "calls": theirs["calls"]}})
    return differences


def as_ledger_accounts(rebuilt: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rebuilt accounts in the live table's shape (no reservation, no budget), for
    :func:`~llmrouter.core.ledger_totals.ledger_totals`."""
    return {key: {"spent_usd": a["spent_usd"], "calls": a["calls"], "reserved": {}, "budget_usd": None}
            for key, a in rebuilt.items()}
