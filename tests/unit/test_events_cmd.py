"""``llmrouter events replay --table ledger``: the report, and how it reads."""

from __future__ import annotations

from llmrouter.core.ledger_replay import BOOKED, Booking, rebuild_accounts
from llmrouter.commands.events import format_report, ledger_report

P0, P1 = "provider:openai:2026-11:p0", "provider:openai:2026-11:p1"


def live_account(spent: float, calls: int) -> dict:
    return {"spent_usd": spent, "calls": calls, "reserved": {}, "budget_usd": None}


def test_a_rebuilt_ledger_equal_to_the_live_one_is_reported_as_a_match_with_its_totals():
    """Totals summed over partitions on both sides; the verdict names how many accounts were rebuilt."""
    events = [(BOOKED, Booking("a", "openai", 0.25, {P0: 1}).to_data()),
              (BOOKED, Booking("b", "openai", 0.5, {P1: 1}).to_data()), ("breaker_open", {})]
    report = ledger_report(rebuild_accounts(events), {P0: live_account(0.25, 1), P1: live_account(0.5, 1)},
                           events=3, undecodable=0)
    assert report["match"] and report["rebuilt"]["provider:openai:2026-11"]["spent_usd"] == 0.75
    assert report["live"] == {"provider:openai:2026-11": {"spent_usd": 0.75, "calls": 2}}
    text = format_report(report)
    assert text.splitlines()[0] == "llm.events: 3 events read, 2 ledger bookings"
    assert "provider:openai:2026-11  0.750000   0.750000  2              2" in text
    assert text.endswith("match: the rebuilt ledger is the live one, account by account (2 accounts with bookings)")


def test_a_ledger_that_differs_is_reported_account_by_account_with_the_bookings_missing():
    """The exact figures of each side (repr: nothing rounded away), and the sequence numbers with no event."""
    events = [(BOOKED, Booking("b", "openai", 0.5, {P1: 2}).to_data())]
    report = ledger_report(rebuild_accounts(events), {P1: live_account(0.75, 2)}, events=1, undecodable=1)
    assert not report["match"] and report["missing"] == {P1: [1]}
    text = format_report(report)
    assert "1 undecodable" in text.splitlines()[0]
    assert f"  {P1}: rebuilt $0.5 in 1 call(s), live $0.75 in 2 call(s)" in text
    assert f"  {P1}: no event for booking(s) 1 (older than llm.events keeps, or lost)" in text
