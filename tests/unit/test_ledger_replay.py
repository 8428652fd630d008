"""The cost ledger rebuilt from its bookings on llm.events: exact, whatever order they are read in."""

from __future__ import annotations

import random

import pytest

from llmrouter.core.ledger import Account
from llmrouter.core.ledger_replay import (BOOKED, BUDGET_EXCEEDED, Booking, as_ledger_accounts, booking_entity,
                                          compare, rebuild_accounts)
from llmrouter.core.ledger_totals import ledger_totals

BUDGET = "budget:premium:2026-11:p1"
PROVIDER = "provider:openai:2026-11:p1"
USER = "user:alice:2026-11:p1"


def live_and_events(calls: int, seed: int = 3) -> tuple[dict[str, dict], list[tuple[str, dict[str, str]]]]:
    """``calls`` bookings made as LedgerSpend.settle makes them (odd costs, some zero, some without a user):
    the live accounts and the booking events."""
    rng = random.Random(seed)
    live = {key: Account() for key in (BUDGET, PROVIDER, USER)}
    events = []
    for i in range(calls):
        cost = rng.choice([0.0, rng.uniform(0.0001, 0.05)])
        keys = [BUDGET] + ([PROVIDER] + ([USER] if i % 3 else []) if cost > 0 else [])
        for key in keys:
            live[key].settle(f"r{i}/openai", cost)
        events.append((BOOKED, Booking(f"r{i}", "openai", cost, {k: live[k].calls for k in keys}).to_data()))
    return {k: a.to_dict() for k, a in live.items()}, events


def test_a_booking_survives_its_trip_through_an_events_string_map():
    """Every field a string (Avro map<string>); the cost comes back as the very same float."""
    booking = Booking("r-1", "openai", 0.1 + 0.2, {BUDGET: 7, PROVIDER: 3})
    data = booking.to_data()
    assert all(isinstance(v, str) for v in data.values())
    assert Booking.from_data(data) == booking
    assert booking_entity(1) == "ledger:p1"


@pytest.mark.parametrize("data", [{}, {"request_id": "r", "provider": "p", "cost_usd": "x", "account:k": "1"},
                                  {"request_id": "r", "provider": "p", "cost_usd": "0.1"},
                                  {"request_id": "r", "provider": "p", "cost_usd": "0.1", "account:k": "0"}],
                         ids=["empty", "bad-cost", "no-account", "seq-zero"])
def test_an_event_that_is_not_a_booking_is_refused(data):
    with pytest.raises(ValueError, match="booking"):
        Booking.from_data(data)


def test_the_rebuilt_accounts_equal_the_live_ones_to_the_last_bit_in_any_reading_order():
    """500 bookings read shuffled: the float sums are the live ledger's exactly, not approximately."""
    live, events = live_and_events(500)
    random.Random(5).shuffle(events)
    rebuilt = rebuild_accounts(events)
    assert rebuilt.bookings == 500 and not rebuilt.missing and not rebuilt.unreadable
    assert compare(rebuilt.accounts, live) == []
    assert {k: a["spent_usd"] for k, a in rebuilt.accounts.items()} == {k: a["spent_usd"] for k, a in live.items()}
    assert ledger_totals(as_ledger_accounts(rebuilt.accounts))["provider:openai:2026-11"]["calls"] == \
        live[PROVIDER]["calls"]


def test_other_events_are_passed_over_and_unreadable_bookings_counted():
    """Breaker moves, flag changes and budget breaches are not bookings; a broken booking is counted."""
    live, events = live_and_events(20)
    events += [("breaker_open", {"from": "closed"}), (BUDGET_EXCEEDED, {"account": BUDGET}), (BOOKED, {"x": "1"})]
    rebuilt = rebuild_accounts(events)
    assert rebuilt.unreadable == 1 and compare(rebuilt.accounts, live) == []


def test_a_missing_booking_is_named_and_the_accounts_it_touched_differ():
    """An event lost (or older than llm.events keeps): the sequence numbers it held, and a mismatch."""
    live, events = live_and_events(30)
    lost = Booking.from_data(events.pop(10)[1])
    rebuilt = rebuild_accounts(events)
    assert rebuilt.missing == {key: [seq] for key, seq in lost.seqs.items()}
    differing = {d["account"] for d in compare(rebuilt.accounts, live)}
    assert differing == {key for key in lost.seqs if lost.cost_usd > 0 or key == BUDGET}
    assert all(d["live"]["calls"] - d["rebuilt"]["calls"] == 1 for d in compare(rebuilt.accounts, live))


def test_a_booking_made_again_under_the_same_number_is_read_as_the_later_one():
    """A worker died after sending a booking its table write did not keep; the next owner booked another call
    under the same number: the later event is the one the table holds."""
    first = Booking("r-dead", "openai", 0.5, {PROVIDER: 1})
    again = Booking("r-next", "openai", 0.25, {PROVIDER: 1})
    rebuilt = rebuild_accounts([(BOOKED, first.to_data()), (BOOKED, again.to_data())])
    assert rebuilt.accounts == {PROVIDER: {"spent_usd": 0.25, "calls": 1}}


def test_an_account_on_one_side_only_counts_as_empty_on_the_other():
    """A live budget share that only ever refused (no booking) matches its absence; a real spend does not."""
    refused_only = {"spent_usd": 0.0, "calls": 0, "reserved": {}, "budget_usd": 0.1, "exceeded": True}
    assert compare({}, {BUDGET: refused_only}) == []
    assert compare({PROVIDER: {"spent_usd": 0.1, "calls": 1}}, {}) == [
        {"account": PROVIDER, "rebuilt": {"spent_usd": 0.1, "calls": 1}, "live": {"spent_usd": 0.0, "calls": 0}}]
