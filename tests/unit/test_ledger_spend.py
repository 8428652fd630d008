"""One request's bookings in the ledger table (a dict standing in for faust's table): a call cut off before it
was settled is booked when its request is delivered again (issue 19, item 6)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from llmrouter.dispatch.budgets import Budget, Ledger
from llmrouter.providers.spec import ProviderSpec

NOW_MS = 1_800_000_000_000


class Table:
    """The part of a faust table the ledger writes through: RocksDB (``data``) and a changelog acked at once."""

    app = SimpleNamespace(conf=SimpleNamespace(producer_max_request_size=1_000_000))  # what the size check reads

    def __init__(self, data: dict[bytes, bytes] | None = None, *, name: str = "ledger") -> None:
        self.data: dict[bytes, bytes] = dict(data or {})
        self.name = name

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def partition_for_key(self, key: bytes) -> int:
        return 0

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> asyncio.Future:
        sent = asyncio.get_running_loop().create_future()
        sent.set_result(None)
        return sent


def spec_of(name: str) -> ProviderSpec:
    """Each provider of these tests is of the kind it is named after."""
    return ProviderSpec(name=name, kind=name, models=("m",), price_input_per_1k_usd=1, price_output_per_1k_usd=1)


def ledger(table: Table, *budgets: Budget) -> Ledger:
    return Ledger(table, budgets, spec_of=spec_of, partitions=2, write_attempts=1, now_ms=lambda: NOW_MS)


def account(table: Table, prefix: str) -> dict[str, Any]:
    (value,) = [json.loads(v) for k, v in table.data.items() if k.decode().startswith(prefix)]
    return value


async def test_a_call_cut_off_before_it_was_settled_is_booked_at_its_estimate_when_its_request_comes_back():
    """No budget covers the provider: the estimate is held in its own account all the same. The first delivery's
    call never ends here (a drain cancelled it); the second delivery books it at 0.30 before calling again and
    settles its own call at 0.20: two calls, 0.50, nothing left reserved."""
    table = Table()
    await ledger(table).spend(request_id="r1", user_id="u", partition=0).reserve("together", 0.30)
    assert account(table, "provider:together:")["reserved"] == {"r1/together": 0.30}
    again = ledger(table).spend(request_id="r1", user_id="u", partition=0)
    assert await again.reserve("together", 0.30) is None
    await again.settle("together", 0.20)
    books = account(table, "provider:together:")
    assert (books["calls"], books["spent_usd"], books["reserved"]) == (2, 0.5, {})
    assert account(table, "user:u:")["calls"] == 2


async def test_a_budget_books_the_cut_off_call_and_counts_it_against_the_share():
    """Under a budget the reservation is in the budget's account: booked there, in the provider's and the
    user's at redelivery; the share then has 0.30 + 0.20 spent, not only the last call's 0.20."""
    table, premium = Table(), Budget("premium", 10.0, "month", frozenset({"openai"}))
    await ledger(table, premium).spend(request_id="r1", user_id=None, partition=0).reserve("openai", 0.30)
    again = ledger(table, premium).spend(request_id="r1", user_id=None, partition=0)
    await again.reserve("openai", 0.30)
    await again.settle("openai", 0.20)
    share = account(table, "budget:premium:")
    assert (share["calls"], share["spent_usd"], share["reserved"]) == (2, 0.5, {})
    assert account(table, "provider:openai:")["calls"] == 2


async def test_a_call_that_cost_nothing_or_was_released_leaves_no_reservation_behind():
    """Settled at $0 or released (never called): the held estimate goes, and a later delivery books nothing."""
    table = Table()
    spend = ledger(table).spend(request_id="r1", user_id=None, partition=0)
    await spend.reserve("together", 0.30)
    await spend.settle("together", 0.0)
    await spend.reserve("together", 0.30)
    await spend.release("together")
    books = account(table, "provider:together:")
    assert (books["calls"], books["reserved"]) == (0, {})
