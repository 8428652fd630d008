"""`llmrouter breakers|limits|ledger`: a worker's views as short tables, and ledger sums over partitions."""

from __future__ import annotations

from llmrouter.core.ledger_totals import ledger_totals
from llmrouter.commands.tables import format_breakers, format_ledger, format_limits, format_rows


def account(spent: float, reserved: dict[str, float] | None = None, budget: float | None = None, calls: int = 1):
    return {"spent_usd": spent, "reserved": reserved or {}, "budget_usd": budget, "calls": calls}


def test_ledger_totals_sum_an_accounts_partitions_and_keep_accounts_apart():
    """budget:premium:2026-11:p0 and :p1 are one account; a provider's account is another."""
    totals = ledger_totals({"budget:premium:2026-11:p0": account(0.05, {"r1": 0.01}, 0.1, 2),
                            "budget:premium:2026-11:p1": account(0.02, {}, 0.1, 1),
                            "provider:openai:2026-11:p1": account(0.07, calls=3)})
    assert totals["budget:premium:2026-11"] == {"spent_usd": 0.07, "reserved_usd": 0.01, "budget_usd": 0.2,
                                                "calls": 3}
    assert totals["provider:openai:2026-11"]["budget_usd"] == 0.0


def test_the_breakers_table_shows_each_provider_here_and_for_the_group_with_how_long_it_stays_open():
    """Open at the group for 42 more seconds, with the owner's reason; a provider only one side knows shows '-'."""
    view = {"worker": "vm:6066", "here": {"flaky": "open", "spare": "closed"},
            "group": {"flaky": {"state": "open", "open_until_s": 1042.0, "reason": "5 failures in a row"},
                      "other": {"state": "closed", "open_until_s": None, "reason": ""}}}
    lines = format_breakers(view, now_s=1000.0).splitlines()
    assert lines[0] == "worker vm:6066"
    assert lines[1].split() == ["PROVIDER", "HERE", "GROUP", "OPEN", "FOR", "REASON"]
    assert lines[2].split() == ["flaky", "open", "open", "42s", "5", "failures", "in", "a", "row"]
    assert lines[3].split() == ["other", "-", "closed", "-"]
    assert lines[4].split() == ["spare", "closed", "-", "-"]


def test_the_limits_table_shows_the_share_the_rate_and_a_429s_hold():
    """Per provider: limit, this worker's rate, its rate now, tokens, held off for."""
    view = {"worker": "vm:6066", "enabled": True, "share": 0.5,
            "providers": {"together": {"limit": "1000/minute", "share": 0.5, "share_per_s": 8.3333,
                                       "rate_per_s": 4.1667, "tokens": 3.5, "limited_for_s": 1.5}}}
    lines = format_limits(view).splitlines()
    assert lines[1] == "rate limits on; this worker's share 0.5"
    assert lines[3].split() == ["together", "1000/minute", "8.3333", "4.1667", "3.5", "1.5s"]


def test_the_ledger_table_says_which_partitions_it_covers():
    """A worker's view covers its partitions only and says how to see the whole group; --all says every one."""
    totals = ledger_totals({"budget:premium:2026-11:p0": account(0.05, budget=0.1, calls=2)})
    mine = format_ledger({"worker": "vm:6066", "accounts": {}, "totals": totals}).splitlines()
    assert "llmrouter ledger --all" in mine[0]
    assert mine[2].split() == ["budget:premium:2026-11", "0.050000", "0.000000", "0.10", "2"]
    assert format_ledger({"worker": None, "accounts": {"a:p0": {}}, "totals": {}}).splitlines()[0] == (
        "every partition of the group, read from the ledger's changelog")


def test_an_empty_table_says_none():
    """A worker with no provider limited shows the header and (none), not a blank."""
    assert format_rows(("A", "B"), []) == "A  B\n(none)"


def test_cost_hints_name_a_nearly_spent_budget_and_whoever_takes_most_of_the_spend():
    """A budget 90 % spent, openai 75 % of the provider spend, alice 80 % of the users': one sentence each."""
    from llmrouter.core.ledger_totals import cost_hints

    def total(spent, budget=0.0, reserved=0.0):
        return {"spent_usd": spent, "reserved_usd": reserved, "budget_usd": budget, "calls": 1}

    hints = cost_hints({"budget:premium:2026-11": total(8.0, budget=10.0, reserved=1.0),
                        "provider:openai:2026-11": total(6.0), "provider:together:2026-11": total(2.0),
                        "user:alice:2026-11": total(8.0), "user:bob:2026-11": total(2.0)})
    assert len(hints) == 3
    assert hints[0].startswith("premium:2026-11: 90% of the $10.00 budget") and "no_premium" in hints[0]
    assert hints[1].startswith("provider openai took 75% of 2026-11's $8.00") and "routing.equivalent" in hints[1]
    assert hints[2].startswith("user alice took 80%") and "quotas.overrides" in hints[2]
    assert cost_hints({"provider:openai:2026-11": total(5.0)}) == []  # one provider: nothing to compare
