"""The cost ledger's accounts summed over partitions. Pure.

The ledger keeps one account per scope, name, period and partition of the
accepted topics (``budget:premium:2026-11:p3``, llmrouter/budgets.py says
why); an operator asks about the account as a whole. A worker's ``/ledger/``
view sums the partitions it owns; ``llmrouter ledger --all`` sums every
partition, read from the ledger table's changelog.
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
