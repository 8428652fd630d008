"""The cost ledger: reserve before the call, settle after, never past the budget."""

from __future__ import annotations

import calendar
import random

import pytest

from llmrouter.core.ledger import Account, BudgetExceeded, account_key, month_of

NOV_30_2026 = calendar.timegm((2026, 11, 30, 0, 0, 0)) * 1000
NOW_S = NOV_30_2026 / 1000  # when the reservations of a test are made: the ledger reads no clock, it is told


def test_keys_name_the_scope_the_name_and_the_utc_month():
    assert month_of(NOV_30_2026) == "2026-11" and month_of(NOV_30_2026 + 86_400_000) == "2026-12"
    assert account_key("provider", "openai", NOV_30_2026) == "provider:openai:2026-11"
    with pytest.raises(ValueError, match="'provider' or 'user'"):
        account_key("team", "x", NOV_30_2026)


def test_a_reservation_that_would_pass_the_budget_is_refused_with_the_figures():
    account = Account(budget_usd=10.0, spent_usd=9.0)
    account.reserve("a", 0.6, at_s=NOW_S)
    with pytest.raises(BudgetExceeded, match=r"\$9.0000 spent and \$0.6000 reserved of \$10.00"):
        account.reserve("b", 0.5, at_s=NOW_S)
    account.release("a")
    account.reserve("b", 0.5, at_s=NOW_S)
    assert account.available_usd() == pytest.approx(0.5)


def test_concurrent_requests_against_a_nearly_spent_budget_never_overspend_it():
    """1,000 calls estimated at 1-5 cents, begun and finished in random order against $10 with $9.50 spent;
    each settles at its estimate: the spend never passes $10, and what was refused could not have fit."""
    rng = random.Random(11)
    account = Account(budget_usd=10.0, spent_usd=9.5)
    open_calls: dict[str, float] = {}
    refused = 0
    for i in range(1000):
        estimate = rng.uniform(0.01, 0.05)
        try:
            account.reserve(f"r{i}", estimate, at_s=NOW_S)
            open_calls[f"r{i}"] = estimate
        except BudgetExceeded:
            refused += 1
        while open_calls and rng.random() < 0.5:
            rid = rng.choice(list(open_calls))
            account.settle(rid, open_calls.pop(rid))
        assert account.spent_usd + account.reserved_usd <= 10.0 + 1e-9
    for rid, estimate in open_calls.items():
        account.settle(rid, estimate)
    assert account.spent_usd <= 10.0 + 1e-9 and refused > 900
    assert account.available_usd() < 0.05  # what is left is smaller than the largest estimate


def test_a_call_that_cost_more_than_its_estimate_is_booked_in_full():
    account = Account(budget_usd=1.0)
    account.reserve("a", 0.1, at_s=NOW_S)
    account.settle("a", 0.3)
    assert (account.spent_usd, account.reserved_usd, account.calls) == (0.3, 0.0, 1)


def test_no_budget_never_refuses_and_reserving_an_id_twice_holds_it_once():
    account = Account()
    account.reserve("a", 1e6, at_s=NOW_S)
    account.reserve("a", 1e6, at_s=NOW_S)
    assert account.available_usd() is None and account.reserved_usd == 1e6


def test_the_state_survives_a_round_trip_through_a_dict():
    account = Account(budget_usd=10.0, spent_usd=1.25, calls=3)
    account.reserve("a", 0.5, at_s=NOW_S)
    assert Account.from_dict(account.to_dict()) == account


def test_a_reservation_nobody_settled_expires_and_frees_its_budget():
    """A worker died mid-call and the request went elsewhere: its reservation is dropped once it is old enough."""
    account = Account(budget_usd=1.0)
    account.reserve("r-dead", 0.8, at_s=100.0)
    account.reserve("r-live", 0.1, at_s=500.0)
    assert account.expire(before_s=400.0) == ["r-dead"]
    assert account.reserved == {"r-live": 0.1} and account.available_usd() == pytest.approx(0.9)
    assert Account.from_dict(account.to_dict()).reserved_at == {"r-live": 500.0}


def test_the_exceeded_mark_is_kept_and_an_account_never_refused_reads_as_before():
    """The mark that a budget's share refused once this period (its audit event sent) survives the table;
    an account without it serialises as it did before the mark existed."""
    account = Account(budget_usd=1.0)
    assert "exceeded" not in account.to_dict()
    account.exceeded = True
    assert Account.from_dict(account.to_dict()).exceeded


def test_a_reservation_must_say_when_it_was_made():
    """The ledger reads no clock: a reservation without its time is a TypeError, not one made at the epoch
    (which the next expire would drop at once)."""
    with pytest.raises(TypeError, match="at_s"):
        Account(budget_usd=1.0).reserve("a", 0.1)  # type: ignore[call-arg]
