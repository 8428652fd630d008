"""The cost ledger's accounts summed over partitions. Pure.

The ledger keeps one account per scope, name, period and partition of the
accepted topics (``budget:premium:2026-11:p3``, llmrouter/dispatch/budgets.py says
why); an operator asks about the account as a whole. A worker's ``/ledger/``
view sums the partitions it owns; ``llmrouter ledger --all`` sums every
partition, read from the ledger table's changelog.

:func:`cost_hints` reads those totals for what an operator could change to
spend less (F053: cost optimisation recommendations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ledger_totals(accounts: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Accounts summed over partitions: ``budget:premium:2026-11`` -> spent, reserved, budget, calls."""
    totals: dict[str, dict[str, float]] = {}
    for key, account in accounts.items():
        name = key.rsplit(":p", 1)[0]
        total = totals.setdefault(name, {"spent_usd": 0.0, "reserved_usd": 0.0, "budget_usd": 0.0, "calls": 0})
        total["spent_usd"] += account["spent_usd"]
        total["reserved_usd"] += sum(account["reserved"].values())
        total["budget_usd"] += account["budget_usd"] or 0.0
        total["calls"] += account["calls"]
    return totals


BUDGET_WARN_SHARE = 0.8  # a budget this much spent gets a hint
DOMINANT_SHARE = 0.5  # a provider or user with this share of a month's spend gets a hint


def cost_hints(totals: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Sentences about the month's spend: budgets nearly spent, a provider or a user taking most of it."""
    hints = []
    for name, total in sorted(totals.items()):
        scope, _, rest = name.partition(":")
        if scope == "budget" and total["budget_usd"] > 0:
            share = (total["spent_usd"] + total["reserved_usd"]) / total["budget_usd"]
            if share >= BUDGET_WARN_SHARE:
                hints.append(f"{rest}: {share:.0%} of the ${total['budget_usd']:.2f} budget spent or reserved; "
                             f"requests only it could serve will be rejected (budget_exceeded) once it is gone: "
                             f"raise premium_config.usage_limit, or set the no_premium flag to keep the rest")
    for scope, advice in (("provider", "group it with a cheaper one in routing.equivalent, or lower its place in "
                                       "fallback_chain"),
                          ("user", "give it a quota of its own in quotas.overrides")):
        for period in sorted({name.rsplit(":", 1)[1] for name in totals if name.startswith(f"{scope}:")}):
            spent = {name.split(":")[1]: t["spent_usd"] for name, t in totals.items()
                     if name.startswith(f"{scope}:") and name.endswith(f":{period}")}
            whole = sum(spent.values())
            top, most = max(spent.items(), key=lambda item: item[1])
            if whole > 0 and len(spent) > 1 and most / whole >= DOMINANT_SHARE:
                hints.append(f"{scope} {top} took {most / whole:.0%} of {period}'s ${whole:.2f}: {advice}")
    return hints
