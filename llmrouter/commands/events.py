"""``llmrouter events replay --table ledger``: a table rebuilt from the audit trail, held against the live one.

Reads ``llm.events`` from the beginning of every partition (no consumer
group: nothing is committed, it never disturbs the workers) up to the end
offsets it saw at start, folds the ledger's bookings into accounts
(:mod:`llmrouter.core.ledger_replay`), reads the live ledger from its
table's changelog (:func:`llmrouter.dispatch.budgets.read_all_accounts`, as ``ledger
--all`` does) and prints the rebuilt totals beside the live ones, and
whether they match account by account, exactly. Exit 0 when they do, 1
when they do not (the accounts that differ and the bookings missing are
listed).

The trail goes back as far as ``kafka.retention.events_hours``: to rebuild a
whole month, keep llm.events at least that long. Calls booked while it reads
may be in one side and not yet in the other: replay a ledger at rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from typing import Any

from llmrouter.dispatch.budgets import read_all_accounts
from llmrouter.wire.codec import Codec
from llmrouter.core.ledger_replay import Rebuilt, as_ledger_accounts, compare, rebuild_accounts
from llmrouter.core.ledger_totals import ledger_totals
from llmrouter.errors import RouterError
from llmrouter.registry.reader import CompactedTopicReader
from llmrouter.config.settings import Settings
from llmrouter.commands.tables import format_rows
from llmrouter.topics import EVENTS, LEDGER_CHANGELOG

READ_TIMEOUT_S = 120.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    events = sub.add_parser("events", help="the audit trail on llm.events").add_subparsers(required=True,
                                                                                         metavar="ACTION")
    p = events.add_parser("replay", help="rebuild a table from llm.events and hold it against the live one")
    p.add_argument("--table", required=True, choices=["ledger"], help="the table to rebuild")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=replay_command)


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(replay_ledger(settings))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["match"] else 1


async def replay_ledger(settings: Settings) -> dict[str, Any]:
    """The ledger rebuilt from llm.events, the live one, and how they compare (the report ``--json`` prints)."""
    events, undecodable = await read_events(settings.kafka.bootstrap_servers, settings.topic(EVENTS))
    rebuilt = rebuild_accounts(events)
    live = await read_all_accounts(settings.kafka.bootstrap_servers,
                                   LEDGER_CHANGELOG.format(app_id=settings.worker.app_id))
    return ledger_report(rebuilt, live, events=len(events), undecodable=undecodable)


def ledger_report(rebuilt: Rebuilt, live: Mapping[str, Mapping[str, Any]], *, events: int,
                  undecodable: int) -> dict[str, Any]:
    differences = compare(rebuilt.accounts, live)
    return {"table": "ledger", "events": events, "undecodable_events": undecodable, "bookings": rebuilt.bookings,
            "unreadable_bookings": rebuilt.unreadable, "match": not differences, "differences": differences,
            "missing": rebuilt.missing, "rebuilt": ledger_totals(as_ledger_accounts(rebuilt.accounts)),
            "live": {name: {"spent_usd": t["spent_usd"], "calls": t["calls"]}
                     for name, t in ledger_totals(live).items()},
            "accounts": rebuilt.accounts}


async def read_events(bootstrap_servers: str, topic: str) -> tuple[list[tuple[str, dict[str, str]]], int]:
    """Every event on ``topic`` up to its end now, as (kind, data) in each partition's order; and how many
    could not be read."""
    codec, events, undecodable = Codec(), [], 0

    async def take(key: bytes | None, value: bytes | None, offset: int) -> None:
        nonlocal undecodable
        try:
            record = codec.decode("Event", value or b"")
            events.append((str(record["kind"]), {str(k): str(v) for k, v in dict(record["data"]).items()}))
        except (RouterError, KeyError, TypeError, ValueError):
            undecodable += 1

    reader = CompactedTopicReader(bootstrap_servers, topic)
    await reader.start()
    try:
        if not await reader.read_to_end(take, timeout_s=READ_TIMEOUT_S):
            raise RouterError(f"could not read {topic} to its end within {READ_TIMEOUT_S:g}s")
    finally:
        await reader.stop()
    return events, undecodable


def format_report(report: Mapping[str, Any]) -> str:
    """The totals side by side (summed over partitions, as ``ledger --all``), then the verdict."""
    rebuilt, live = report["rebuilt"], report["live"]
    rows = []
    for name in sorted(set(rebuilt) | set(live)):
        mine, theirs = rebuilt.get(name, {}), live.get(name, {})
        rows.append((name, _usd(mine.get("spent_usd")), _usd(theirs.get("spent_usd")),
                     str(int(mine.get("calls", 0))), str(int(theirs.get("calls", 0)))))
    lines = [f"llm.events: {report['events']} events read, {report['bookings']} ledger bookings"
             + (f", {report['undecodable_events']} undecodable" if report["undecodable_events"] else "")
             + (f", {report['unreadable_bookings']} unreadable" if report["unreadable_bookings"] else ""),
             format_rows(("ACCOUNT", "REBUILT $", "LIVE $", "REBUILT CALLS", "LIVE CALLS"), rows)]
    if report["match"]:
        lines.append(f"match: the rebuilt ledger is the live one, account by account "
                     f"({len(report['accounts'])} accounts with bookings)")
        return "\n".join(lines)
    lines.append(f"DIFFERENT: {len(report['differences'])} account(s) differ from the live table")
    lines += [f"  {d['account']}: rebuilt ${d['rebuilt']['spent_usd']!r} in {d['rebuilt']['calls']} call(s), "
              f"live ${d['live']['spent_usd']!r} in {d['live']['calls']} call(s)" for d in report["differences"]]
    lines += [f"  {account}: no event for booking(s) {', '.join(map(str, seqs[:10]))}"
              + (f" and {len(seqs) - 10} more" if len(seqs) > 10 else "")
              + " (older than llm.events keeps, or lost)" for account, seqs in report["missing"].items()]
    return "\n".join(lines)


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"
