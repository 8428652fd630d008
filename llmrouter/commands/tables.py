"""``llmrouter breakers|limits|ledger``: the resilience tables of a running worker, as short tables.

Each asks a worker's web view (``/breakers/``, ``/limits/``, ``/ledger/``;
the worker of the settings, ``worker.web_host``:``worker.web_port``, or
``--url``) and prints a few readable columns, or with ``--json`` the view as
it came. A worker's ``/ledger/`` covers only the partitions it owns;
``llmrouter ledger --all`` needs no worker: it reads the ledger table's
changelog whole (the last record of each key) and sums every partition of
the group. ``/ledger/`` names users and their spend, so ``llmrouter ledger``
sends the admin key (``LLMROUTER_ADMIN_KEY``, from the environment or the
secrets file) in the ``X-Admin-Key`` header.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from llmrouter.core.ledger_totals import cost_hints, ledger_totals
from llmrouter.dispatch.budgets import read_all_accounts
from llmrouter.config.secrets import ADMIN_KEY_ENV, ADMIN_KEY_HEADER, Secrets
from llmrouter.config.settings import Settings
from llmrouter.topics import LEDGER_CHANGELOG


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, text, func in (("breakers", "each provider's circuit breaker, here and for the group", breakers_command),
                             ("limits", "this worker's share of each provider's rate limit", limits_command),
                             ("ledger", "spend and budgets: accounts summed over partitions", ledger_command)):
        p = sub.add_parser(name, help=f"{text} (a running worker's /{name}/ view)")
        p.add_argument("--url", "--worker", dest="url", help="worker web URL (default: from the settings)")
        p.add_argument("--json", action="store_true", help="print the view as JSON")
        if name == "ledger":
            p.add_argument("--all", action="store_true", help="every partition of the group, read from the "
                                                              "ledger's changelog (no worker needed)")
        p.set_defaults(func=func)


def breakers_command(args: argparse.Namespace, settings: Settings) -> int:
    return _show(args, settings, "/breakers/", format_breakers)


def limits_command(args: argparse.Namespace, settings: Settings) -> int:
    return _show(args, settings, "/limits/", format_limits)


def ledger_command(args: argparse.Namespace, settings: Settings) -> int:
    if not args.all:  # the view names users and their spend: it wants the admin key
        return _show(args, settings, "/ledger/", format_ledger, admin_key=Secrets.load().get(ADMIN_KEY_ENV))
    changelog = LEDGER_CHANGELOG.format(app_id=settings.worker.app_id)
    accounts = asyncio.run(read_all_accounts(settings.kafka.bootstrap_servers, changelog))
    totals = ledger_totals(accounts)
    view = {"worker": None, "accounts": accounts, "totals": totals, "hints": cost_hints(totals)}
    print(json.dumps(view, indent=2) if args.json else format_ledger(view))
    return 0


def _show(args: argparse.Namespace, settings: Settings, path: str,
          formatter: Callable[[dict[str, Any]], str], *, admin_key: str | None = None) -> int:
    url = (args.url or f"http://{settings.worker.web_host}:{settings.worker.web_port}").rstrip("/") + path
    request = urllib.request.Request(url, headers={ADMIN_KEY_HEADER: admin_key} if admin_key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            view = json.load(response)
    except urllib.error.HTTPError as exc:  # 401/403 from a view behind the admin key says what it needs
        print(f"llmrouter: {url} answered {exc.code}: {_error_of(exc)}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"llmrouter: no worker answered at {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(view, indent=2) if args.json else formatter(view))
    return 0


def _error_of(reply: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(reply).get("error") or reply.reason)
    except (ValueError, AttributeError, OSError):
        return str(reply.reason)


def format_breakers(view: dict[str, Any], *, now_s: float | None = None) -> str:
    """One line per provider: its breaker here, and the group's (the owner's last word) with how long it stays
    open and why."""
    now_s = time.time() if now_s is None else now_s
    here, group = view.get("here", {}), view.get("group", {})
    rows = []
    for provider in sorted(set(here) | set(group)):
        shared = group.get(provider, {})
        open_until = shared.get("open_until_s")
        left = f"{open_until - now_s:.0f}s" if open_until and open_until > now_s else "-"
        rows.append((provider, here.get(provider, "-"), shared.get("state", "-"), left, shared.get("reason", "")))
    return _heading(view) + format_rows(("PROVIDER", "HERE", "GROUP", "OPEN FOR", "REASON"), rows)


def format_limits(view: dict[str, Any]) -> str:
    """One line per provider with a rate limit: this worker's share, its rate now, tokens, how long a 429 holds
    it off."""
    state = "on" if view.get("enabled") else "off (not enforced)"
    heading = _heading(view) + f"rate limits {state}; this worker's share {view.get('share', 0):g}\n"
    rows = [(provider, p["limit"], f"{p['share_per_s']:g}", f"{p['rate_per_s']:g}", f"{p['tokens']:g}",
             f"{p['limited_for_s']:g}s" if p["limited_for_s"] else "-")
            for provider, p in sorted(view.get("providers", {}).items())]
    return heading + format_rows(("PROVIDER", "LIMIT", "SHARE /S", "RATE /S", "TOKENS", "HELD OFF"), rows)


def format_ledger(view: dict[str, Any]) -> str:
    """One line per account, summed over the partitions the view covers."""
    worker = view.get("worker")
    heading = (f"worker {worker}: the partitions it owns (`llmrouter ledger --all` for the whole group)\n"
               if worker else "every partition of the group, read from the ledger's changelog\n")
    rows = [(name, f"{t['spent_usd']:.6f}", f"{t['reserved_usd']:.6f}",  # a cheap call costs a few millionths
             f"{t['budget_usd']:.2f}" if t["budget_usd"] else "-", str(int(t["calls"])))
            for name, t in sorted(view.get("totals", {}).items())]
    return heading + format_rows(("ACCOUNT", "SPENT $", "RESERVED $", "BUDGET $", "CALLS"), rows)


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last one is not padded. A line says so when there are no rows."""
    if not rows:
        return "  ".join(header) + "\n(none)"
    table = [tuple(header), *(tuple(str(cell) for cell in row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def _heading(view: dict[str, Any]) -> str:
    return f"worker {view['worker']}\n" if view.get("worker") else ""
