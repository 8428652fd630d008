"""``llmrouter dlq list|replay``: the dead letters on ``llm.dlq``, and producing them again.

Both read ``llm.dlq`` from the beginning of every partition with no consumer
group (nothing is committed, any number may run at once) and stop at the end
offsets they saw at start, so dead letters written meanwhile (a replay that
fails again) are not read. What to select and what a replay produces is
decided in :mod:`llmrouter.core.dlq`; this module reads, prints and produces.

``replay`` produces each selected dead letter's original key, value and
headers (plus ``llmrouter-dlq-replay: <partition>:<offset>``) to its source
topic or ``--to TOPIC``; ``--fresh-deadline`` rewrites the request so it gets a
whole timeout from now. Exit codes: 0 when everything to replay was produced
(skipped dead letters and an empty selection are reported, not failures), 1 if
anything failed, 2 for bad arguments (an unknown id, a missing ``--to`` topic),
before anything is produced.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from llmrouter.wire.dead_letters import WireLetters
from llmrouter.wire.contract import PRIORITIES
from llmrouter.core.dlq import (DlqEntry, LetterId, Replay, ReplayOptions, Selection, Skip, count_by_code,
                                missing_ids, parse_letter_id, parse_since, plan_replays)
from llmrouter.errors import ConfigError, RouterError
from llmrouter.config.settings import Settings
from llmrouter.topics import ACCEPTED, DLQ, REQUESTS
from llmrouter.runtime.clock import wall_ms

STALL_S = 30.0  # no record and no position change for this long while reading llm.dlq: give up
PROGRESS_EVERY_S = 2.0
PRODUCE_WINDOW = 500  # sends in flight before the first of them is awaited


def add_parser(sub: argparse._SubParsersAction) -> None:
    dlq = sub.add_parser("dlq", help="dead letters on llm.dlq: list and replay").add_subparsers(
        required=True, metavar="ACTION")
    p = dlq.add_parser("list", help="one line per dead letter, oldest first, and counts by error code")
    _add_filters(p)
    p.add_argument("--limit", type=_positive_int, metavar="N", help="only the N most recent that match")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line with every field (the summary goes to stderr)")
    p.set_defaults(func=list_command)

    p = dlq.add_parser("replay", help="produce dead letters' original messages again")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="extend", nargs="+", dest="ids", metavar="P:O",
                       help="the dead letters at these <partition>:<offset> of llm.dlq")
    which.add_argument("--code", action="extend", nargs="+", dest="codes", metavar="CODE",
                       help="those with these error codes")
    which.add_argument("--request-id", action="extend", nargs="+", dest="request_ids", metavar="ID",
                       help="those of these request ids")
    which.add_argument("--all", action="store_true", help="every dead letter")
    p.add_argument("--since", metavar="DURATION|ISO", help="only those that failed since then (2h, 1d, or a time)")
    p.add_argument("--to", metavar="TOPIC", help="produce to this (existing) topic instead of each source topic")
    p.add_argument("--fresh-deadline", action="store_true",
                   help="rewrite each request to get a whole timeout from now: created_at_ms = now, no deadline_ms")
    p.add_argument("--force", action="store_true", help="also replay values that are not valid requests")
    p.add_argument("--dry-run", action="store_true", help="print what would be produced; produce nothing")
    p.set_defaults(func=replay_command)


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--code", action="extend", nargs="+", dest="codes", metavar="CODE",
                   help="only these error codes (e.g. all_providers_unavailable undecodable)")
    p.add_argument("--request-id", action="extend", nargs="+", dest="request_ids", metavar="ID")
    p.add_argument("--since", metavar="DURATION|ISO", help="only those that failed since then (2h, 1d, or a time)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


# -- list ---------------------------------------------------------------------------------------------------


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    _log_to_stderr()
    selection = selection_of(args, now_ms=wall_ms())
    read = asyncio.run(read_dead_letters(settings, WireLetters()))
    chosen = selection.pick(read.entries)
    shown = chosen[-args.limit:] if args.limit else chosen
    if args.json:
        for entry in shown:
            print(json.dumps(entry.as_json(), ensure_ascii=False))
    elif shown:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        print(format_table(shown, width=width))
    print(list_summary(read, chosen, shown, filtered=selection != Selection()),
          file=sys.stderr if args.json else sys.stdout)
    return 0


def format_table(entries: Sequence[DlqEntry], *, width: int | None) -> str:
    """One line per dead letter; the reason cut to ``width`` columns when given (a terminal)."""
    rows = [("ID", "FAILED AT (UTC)", "CODE", "REQUEST ID", "SOURCE", "REASON")]
    for e in entries:
        rows.append((str(e.id), _short_time(e.failed_at_ms), e.error_code, e.request_id or "-", e.source,
                     " ".join(e.reason.split())))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  "
        reason = row[-1]
        if width is not None and len(head) + len(reason) > width:
            room = max(20, width - len(head))
            reason = reason if len(reason) <= room else reason[:room - 1] + "…"
        lines.append(head + reason)
    return "\n".join(lines)


def list_summary(read: DlqRead, chosen: Sequence[DlqEntry], shown: Sequence[DlqEntry], *, filtered: bool) -> str:
    total = len(read.entries)
    if not chosen:
        return f"none of the {_plural(total, 'dead letter')} on {read.topic} match" if total and filtered \
            else f"no dead letters on {read.topic}"
    counts = ", ".join(f"{code} {n}" for code, n in count_by_code(chosen).items())
    head = f"{len(chosen)} of {_plural(total, 'dead letter')} on {read.topic} match" if filtered \
        else f"{_plural(total, 'dead letter')} on {read.topic}"
    tail = f" (showing the last {len(shown)})" if len(shown) < len(chosen) else ""
    return f"{head}: {counts}{tail}"


# -- replay -------------------------------------------------------------------------------------------------


def replay_command(args: argparse.Namespace, settings: Settings) -> int:
    _log_to_stderr()
    selection = selection_of(args, now_ms=wall_ms())
    return asyncio.run(replay(settings, selection, args))


async def replay(settings: Settings, selection: Selection, args: argparse.Namespace) -> int:
    letters = WireLetters()
    read = await read_dead_letters(settings, letters, to_topic=args.to)
    missing = missing_ids(selection, read.entries)
    if missing:
        raise ConfigError(f"no dead letter at {', '.join(map(str, missing))} on {read.topic} "
                          f"({read.describe_offsets()}); nothing was produced")
    chosen = selection.pick(read.entries)
    if not chosen:
        print(f"no dead letter on {read.topic} matches the selection ({len(read.entries)} read); nothing to replay")
        return 0
    redirects = {settings.topic(ACCEPTED.format(priority=p)): settings.topic(REQUESTS.format(priority=p))
                 for p in PRIORITIES}
    plan = plan_replays(chosen, letters, ReplayOptions(to_topic=args.to, fresh_deadline=args.fresh_deadline,
                                                     force=args.force, now_ms=wall_ms(), redirects=redirects))
    for skip in plan.skips:
        print(f"skipped  {skip.letter}  {skip.request_id or '-'}: {skip.reason}")
    missing_topic = [r for r in plan.replays if r.topic not in read.topics]
    for r in missing_topic:
        print(f"failed   {r.letter}  {r.request_id or '-'}: topic {r.topic} does not exist (any more); "
              f"give another with --to")
    sendable = [r for r in plan.replays if r.topic in read.topics]
    if args.dry_run:
        return dry_run(sendable, chosen, plan.skips, missing_topic)
    produced, errors = await produce(settings, sendable)
    print(f"replayed {produced} of {_plural(len(chosen), 'selected dead letter')}"
          f"{_skipped_and_failed(plan.skips, [*missing_topic, *errors])}")
    return 1 if missing_topic or errors else 0


def dry_run(sendable: Sequence[Replay], chosen: Sequence[DlqEntry], skips: Sequence[Skip],
            failed: Sequence[Replay]) -> int:
    """Say what would be produced; the exit code a real run would have, as far as it can be known."""
    for r in sendable:
        print(f"would replay  {r.letter}  {r.request_id or '-'} -> {r.topic}  {_describe(r)}, {len(r.value)} bytes")
    print(f"dry run: {len(sendable)} of {_plural(len(chosen), 'selected dead letter')} would be replayed"
          f"{_skipped_and_failed(skips, failed)}; nothing was produced")
    return 1 if failed else 0


def _skipped_and_failed(skips: Sequence[Skip], failed: Sequence[object]) -> str:
    parts = []
    if skips:
        forceable = sum(1 for s in skips if s.not_a_request)
        parts.append(f"{len(skips)} skipped" + (f" ({forceable} not a request: --force replays them)"
                                                if forceable else ""))
    if failed:
        parts.append(f"{len(failed)} failed")
    return f"; {', '.join(parts)}" if parts else ""


def _describe(r: Replay) -> str:
    return r.encoding + (", fresh deadline" if r.rewritten else "")


async def produce(settings: Settings, replays: Sequence[Replay], *, out: TextIO | None = None) -> tuple[int, list]:
    """Produce ``replays`` (awaiting the broker's ack of each); (how many were, [(replay, error)])."""
    out = out or sys.stdout
    progress = Progress("produced", total=len(replays))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all",
                                enable_idempotence=True)
    await _start(producer, settings)
    produced, errors = 0, []
    try:
        for start in range(0, len(replays), PRODUCE_WINDOW):
            window = replays[start:start + PRODUCE_WINDOW]
            sends = [await _send(producer, r) for r in window]
            for r, sent in zip(window, sends):
                try:
                    meta = await sent
                except (KafkaError, OSError) as exc:
                    errors.append((r, exc))
                    print(f"failed   {r.letter}  {r.request_id or '-'} -> {r.topic}: {exc!r}", file=out)
                    continue
                produced += 1
                print(f"replayed {r.letter}  {r.request_id or '-'} -> {meta.topic}[{meta.partition}]@{meta.offset}"
                      f"  {_describe(r)}", file=out)
            progress.update(start + len(window))
    finally:
        await producer.stop()
    return produced, errors


async def _send(producer: AIOKafkaProducer, r: Replay) -> asyncio.Future:
    """Start one send; a send refused at once (too large, ...) becomes a failed future."""
    try:
        return await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
    except (KafkaError, OSError) as exc:
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed


# -- reading llm.dlq ----------------------------------------------------------------------------------------


@dataclass
class DlqRead:
    """Every record of llm.dlq up to the end offsets seen at start, and the cluster's topics."""

    topic: str
    entries: list[DlqEntry]
    offsets: dict[int, tuple[int, int]]  # partition -> (first offset, end offset)
    topics: frozenset[str]

    def describe_offsets(self) -> str:
        held = [f"partition {p}: {'empty' if b == e else f'offsets {b}-{e - 1}'}"
                for p, (b, e) in sorted(self.offsets.items())]
        return "; ".join(held)


async def read_dead_letters(settings: Settings, letters: WireLetters, *, to_topic: str | None = None) -> DlqRead:
    """Read llm.dlq whole (bounded). With ``to_topic``, first check that it exists (ConfigError if not)."""
    topic = settings.topic(DLQ)
    topics, partitions = await _cluster_topics(settings, topic)
    if to_topic is not None and to_topic not in topics:
        hint = f" (did you mean {settings.topic(to_topic)}?)" if settings.topic(to_topic) in topics else ""
        raise ConfigError(f"--to topic {to_topic} does not exist{hint}; nothing was produced")
    if topic not in topics:
        raise RouterError(f"topic {topic} does not exist: no worker has run with these settings "
                          f"(topic prefix {settings.kafka.topic_prefix!r}); `llmrouter topics create` creates it")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await _start(consumer, settings)
    try:
        consumer.assign(partitions)
        first = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, first[tp])
        entries = await _read_until(consumer, letters, end, total=sum(end[tp] - first[tp] for tp in partitions))
    finally:
        await consumer.stop()
    return DlqRead(topic=topic, entries=entries, topics=topics,
                   offsets={tp.partition: (first[tp], end[tp]) for tp in partitions})


async def _cluster_topics(settings: Settings, topic: str) -> tuple[frozenset[str], list[TopicPartition]]:
    """Every topic of the cluster, and the partitions of ``topic`` (none when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=15000)
    await _start(admin, settings)
    try:
        topics = frozenset(await admin.list_topics())
        if topic not in topics:
            return topics, []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])
    return topics, [TopicPartition(topic, n) for n in numbers]


async def _read_until(consumer: AIOKafkaConsumer, letters: WireLetters, end: dict[TopicPartition, int], *,
                      total: int) -> list[DlqEntry]:
    progress = Progress("read", total=total, unit="dead letters")
    entries: list[DlqEntry] = []
    last_move, positions = time.monotonic(), {}
    while True:
        now_at = {tp: await consumer.position(tp) for tp in end}
        behind = [tp for tp, position in now_at.items() if position < end[tp]]
        if not behind:
            return entries
        if now_at != positions:
            last_move, positions = time.monotonic(), now_at
        elif time.monotonic() - last_move > STALL_S:
            raise RouterError(f"reading {behind[0].topic} stalled at {positions} (end offsets {end})")
        for tp, records in (await consumer.getmany(*behind, timeout_ms=500)).items():
            for r in records:
                if r.offset < end[tp]:
                    entries.append(DlqEntry.decode(letters, id=LetterId(tp.partition, r.offset), key=r.key,
                                                   value=r.value, timestamp_ms=r.timestamp))
        progress.update(len(entries))


async def _start(client: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient, settings: Settings) -> None:
    try:
        await client.start()
    except KafkaError as exc:
        raise RouterError(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}; "
                          f"`llmrouter infra up` starts a local one") from exc


# -- shared -------------------------------------------------------------------------------------------------


def selection_of(args: argparse.Namespace, *, now_ms: int) -> Selection:
    """The dead letters the arguments name (ConfigError for a bad id or --since)."""
    return Selection(
        ids=frozenset(parse_letter_id(text) for text in getattr(args, "ids", None) or ()),
        codes=frozenset(args.codes or ()),
        request_ids=frozenset(args.request_ids or ()),
        since_ms=parse_since(args.since, now_ms=now_ms) if args.since else None)


class Progress:
    """A line on stderr at most every PROGRESS_EVERY_S seconds, once a step has run that long."""

    def __init__(self, verb: str, *, total: int, unit: str = "", stream: TextIO | None = None) -> None:
        self._verb, self._total, self._unit = verb, total, unit
        self._stream = stream or sys.stderr
        self._last = time.monotonic()

    def update(self, done: int) -> None:
        if time.monotonic() - self._last < PROGRESS_EVERY_S or done >= self._total:
            return
        self._last = time.monotonic()
        print(f"... {self._verb} {done}/{self._total}" + (f" {self._unit}" if self._unit else ""),
              file=self._stream, flush=True)


def _log_to_stderr() -> None:
    """Keep stdout for the listing: the codec's warnings (a legacy Avro header) go to stderr."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _short_time(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_ms / 1000))
