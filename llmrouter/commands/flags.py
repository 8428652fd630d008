"""``llmrouter flags list|set`` and ``llmrouter override disable|force|clear``: degradation by hand (F023, F055).

Both read the compacted ``llm.router.flags`` topic whole (no worker needed: a
flag can be set while every worker is down, and each obeys it from its first
request), and a change is one record there plus one audit event on
``llm.events`` (:func:`llmrouter.dispatch.flags.write_change`). Running workers apply
it within about a second. Clearing what is not set writes nothing.

Who made a change is ``user@host`` of the shell that ran the command.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket

from aiokafka import AIOKafkaProducer

from llmrouter.wire.codec import Codec
from llmrouter.core.flag_state import FLAGS, OVERRIDE_PREFIX, Change, FlagState, Mark, utc_iso
from llmrouter.errors import ConfigError
from llmrouter.dispatch.flags import write_change
from llmrouter.runtime.kafka_admin import ensure_topics
from llmrouter.runtime.clock import wall_ms
from llmrouter.registry.reader import CompactedTopicReader
from llmrouter.config.settings import Settings
from llmrouter.topics import EVENTS, FLAGS as FLAGS_TOPIC


def add_parser(sub: argparse._SubParsersAction) -> None:
    flags = sub.add_parser("flags", help="degradation flags on every worker (llm.router.flags)").add_subparsers(
        required=True, metavar="ACTION")
    p = flags.add_parser("list", help="the flags and provider overrides in force, who set them, when and why")
    p.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(func=list_command)
    p = flags.add_parser("set", help="turn a flag on or off on every worker")
    p.add_argument("name", choices=FLAGS)
    p.add_argument("state", choices=("on", "off"))
    p.add_argument("--note", default="", help="why (kept with the flag and in the audit event)")
    p.set_defaults(func=set_command)

    override = sub.add_parser("override", help="disable a provider, or force it first, on every worker")
    p = override.add_subparsers(required=True, metavar="ACTION")
    for action, text in (("disable", "skip the provider in every chain"),
                         ("force", "try the provider first in every chain that has it"),
                         ("clear", "end the provider's override")):
        q = p.add_parser(action, help=text)
        q.add_argument("provider")
        q.add_argument("--note", default="", help="why (kept with the override and in the audit event)")
        q.set_defaults(func=override_command, action=action)


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    async def listed() -> FlagState:
        await ensure_topics(settings)  # a topic nobody made yet holds no flag; reading it would wait for it
        return await read_flags(settings)

    state = asyncio.run(listed())
    print(json.dumps(state.to_view(), indent=2) if args.json else format_state(state))
    return 0


def set_command(args: argparse.Namespace, settings: Settings) -> int:
    change = asyncio.run(change_flags(settings, args.name, args.state, who=operator(), note=args.note))
    _report(change, f"{args.name} is already off")
    return 0


def override_command(args: argparse.Namespace, settings: Settings) -> int:
    change = asyncio.run(change_flags(settings, f"{OVERRIDE_PREFIX}{args.provider}", args.action, who=operator(),
                                      note=args.note))
    _report(change, f"{args.provider} has no override")
    return 0


def _report(change: Change | None, unchanged: str) -> None:
    if change is None:
        print(f"{unchanged}; nothing changed")
    else:
        print(f"{change.summary}; running workers apply it within seconds")


def operator() -> str:
    """``user@host`` of this shell: who the audit trail says made the change."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in this container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def read_flags(settings: Settings) -> FlagState:
    """The flags and overrides in force: llm.router.flags read whole (records that cannot be read are skipped,
    as the workers skip them)."""
    state = FlagState()

    async def apply(key: bytes | None, value: bytes | None, offset: int) -> None:
        nonlocal state
        try:
            state = state.applied(key, value)
        except ConfigError:
            pass

    reader = CompactedTopicReader(settings.kafka.bootstrap_servers, settings.topic(FLAGS_TOPIC))
    await reader.start()
    try:
        await reader.read_to_end(apply, timeout_s=settings.registry.catch_up_timeout_s)
    finally:
        await reader.stop()
    return state


async def change_flags(settings: Settings, target: str, action: str, *, who: str, note: str = "") -> Change | None:
    """Make ``target`` (a flag, or ``override:<provider>``) what ``action`` asks, on every worker: the record and
    its audit event, or nothing (None) when it is so already. :class:`ConfigError` for a bad name or action."""
    FlagState().change(target, action, mark=Mark(who, 0, note))  # refuse a bad name before touching Kafka
    await ensure_topics(settings)
    change = (await read_flags(settings)).change(target, action, mark=Mark(who, wall_ms(), note))
    if change is None:
        return None
    codec = Codec(output=settings.worker.result_encoding)  # as the workers write their events
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        async def send_record(key: str, value: bytes | None) -> object:
            return await producer.send_and_wait(settings.topic(FLAGS_TOPIC), value, key=key.encode())

        async def send_event(entity: str, kind: str, data: dict[str, str]) -> None:
            event = {"entity": entity, "kind": kind, "data": data, "at_ms": wall_ms()}
            await producer.send_and_wait(settings.topic(EVENTS), codec.encode("Event", event), key=entity.encode())

        await write_change(change, via=f"llmrouter cli on {socket.gethostname()}", send_record=send_record,
                           send_event=send_event)
    finally:
        await producer.stop()
    return change


def format_state(state: FlagState) -> str:
    """Every flag on or off, then each override, with who, when and why."""
    rows = [("FLAG / OVERRIDE", "STATE", "SET BY", "AT (UTC)", "NOTE")]
    for name in FLAGS:
        mark = state.on(name)
        rows.append((name, "on", mark.who, utc_iso(mark.at_ms), mark.note) if mark else (name, "off", "", "", ""))
    for provider, override in sorted(state.overrides.items()):
        rows.append((f"{OVERRIDE_PREFIX}{provider}", override.action, override.mark.who,
                     utc_iso(override.mark.at_ms), override.mark.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)
