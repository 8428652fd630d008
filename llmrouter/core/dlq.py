"""Dead letters as ``llmrouter dlq list|replay`` sees them: which ones an
operator selected, whether one can be replayed, and what its replay produces.

Pure: no Kafka here (:mod:`llmrouter.commands.dlq` reads ``llm.dlq`` and produces),
no codec (what needs the bytes' encoding is asked of a :class:`LetterFormat`,
which :class:`llmrouter.wire.dead_letters.WireLetters` gives); the time comes
in as an argument.

A dead letter is named by where it sits on ``llm.dlq``: ``<partition>:<offset>``
(:class:`LetterId`). A replay produces the upstream message again, as it was
(original key, value and headers), to its source topic or another one, with
one header more, ``llmrouter-dlq-replay: <partition>:<offset>``. With a fresh
deadline the request is rewritten so it gets a whole timeout from now:
``created_at_ms`` is now and ``deadline_ms`` is gone (``timeout_ms`` stays),
in the encoding it came in (JSON stays JSON, Avro is written again with the
current LLMRequest schema). A value that is not a valid request would only be
dead-lettered again, so it is skipped unless forced.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from llmrouter.errors import ConfigError, RequestError

REPLAY_HEADER = "llmrouter-dlq-replay"  # "<partition>:<offset>" of the dead letter a message was replayed from
UNREADABLE = "unreadable_dead_letter"  # the code shown for a record on llm.dlq that is not a DeadLetter
_ID = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

Headers = tuple[tuple[str, bytes | None], ...]


class LetterFormat(Protocol):
    """What reading and replaying dead letters asks of the bytes on the wire."""

    def dead_letter(self, value: bytes | None) -> Mapping[str, Any]:
        """The decoded DeadLetter record of an llm.dlq value; RequestError or ValueError when it is none."""

    def request_problem(self, value: bytes) -> str | None:
        """Why ``value`` is not a valid LLMRequest (what intake would say), or None."""

    def encoding(self, value: bytes) -> str:
        """``"avro"`` or ``"json"``: how a valid request's bytes are encoded."""

    def with_fresh_deadline(self, value: bytes, *, now_ms: int) -> bytes:
        """``value`` (a valid request) rewritten by :func:`fresh_deadline`, in the encoding it came in."""


@dataclass(frozen=True, order=True)
class LetterId:
    """Where a dead letter sits on llm.dlq."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


def parse_letter_id(text: str) -> LetterId:
    """``"1:42"`` -> LetterId(1, 42); ConfigError for anything else."""
    match = _ID.match(text)
    if not match:
        raise ConfigError(f"{text!r} is not a dead letter id; write it as <partition>:<offset>, e.g. 0:42 "
                          f"(the first column of `llmrouter dlq list`)")
    return LetterId(int(match.group(1)), int(match.group(2)))


def parse_since(text: str, *, now_ms: int) -> int:
    """The epoch milliseconds ``--since`` names: a duration back from ``now_ms`` (``90s``, ``15m``,
    ``2h``, ``1d``, ``1w``, or sums such as ``1h30m``) or an ISO 8601 time (UTC unless it says)."""
    compact = text.strip().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if parts and "".join(number + unit for number, unit in parts) == compact:
        return now_ms - int(sum(float(number) * _UNIT_MS[unit] for number, unit in parts))
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither a duration (90s, 15m, 2h, 1d, 1w, 1h30m) nor an ISO 8601 "
                          f"time (2025-06-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds: ``2025-06-01T12:00:03.042Z``."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class DlqEntry:
    """One record of llm.dlq: its decoded DeadLetter, or why it could not be read.

    ``timestamp_ms`` is the Kafka record's timestamp: the failure time when
    the record is unreadable.
    """

    id: LetterId
    key: bytes | None
    timestamp_ms: int
    record: Mapping[str, Any] | None = None
    problem: str | None = None

    @classmethod
    def decode(cls, letters: LetterFormat, *, id: LetterId, key: bytes | None, value: bytes | None,
               timestamp_ms: int) -> DlqEntry:
        """Read one llm.dlq record; a value that is no DeadLetter gives an entry with its ``problem``."""
        try:
            record = letters.dead_letter(value)
            _check_dead_letter(record)
        except (RequestError, ValueError) as exc:
            return cls(id=id, key=key, timestamp_ms=timestamp_ms, problem=f"not a DeadLetter record: {exc}")
        return cls(id=id, key=key, timestamp_ms=timestamp_ms, record=record)

    @property
    def request_id(self) -> str | None:
        return self.record.get("request_id") if self.record else None

    @property
    def error_code(self) -> str:
        return self.record["error_code"] if self.record else UNREADABLE

    @property
    def reason(self) -> str:
        return self.record["reason"] if self.record else str(self.problem)

    @property
    def failed_at_ms(self) -> int:
        return self.record["failed_at_ms"] if self.record else self.timestamp_ms

    @property
    def source_topic(self) -> str:
        return (self.record.get("source_topic") or "") if self.record else ""

    @property
    def source(self) -> str:
        """``topic:partition:offset`` of the upstream message, or ``-`` when unknown."""
        if not self.source_topic:
            return "-"
        return f"{self.source_topic}:{self.record.get('source_partition', -1)}:{self.record.get('source_offset', -1)}"

    @property
    def original_key(self) -> bytes | None:
        return _as_bytes(self.record.get("original_key")) if self.record else None

    @property
    def original_value(self) -> bytes | None:
        return _as_bytes(self.record.get("original_value")) if self.record else None

    @property
    def headers(self) -> Headers:
        if not self.record:
            return ()
        return tuple((h["key"], _as_bytes(h.get("value"))) for h in self.record.get("headers") or ())

    @property
    def replay_of(self) -> str | None:
        """The dead letter this one's message was replayed from, when it was a replay."""
        values = [v for k, v in self.headers if k == REPLAY_HEADER and v is not None]
        return values[-1].decode("utf-8", "replace") if values else None

    def sort_key(self) -> tuple[int, int, int]:
        return self.failed_at_ms, self.id.partition, self.id.offset

    def as_json(self) -> dict[str, Any]:
        """Every field, bytes made printable: ``original_value`` as text when it is UTF-8 JSON, else
        base64 (``original_value_encoding`` says which); keys and header values as text when UTF-8."""
        value, value_encoding = _printable(self.original_value, json_only=True)
        key, key_encoding = _printable(self.original_key, json_only=False)
        return {
            "id": str(self.id), "partition": self.id.partition, "offset": self.id.offset,
            "failed_at": format_ms(self.failed_at_ms), "failed_at_ms": self.failed_at_ms,
            "error_code": self.error_code, "request_id": self.request_id, "reason": self.reason,
            "source_topic": self.source_topic or None,
            "source_partition": self.record.get("source_partition") if self.record else None,
            "source_offset": self.record.get("source_offset") if self.record else None,
            "attempts": self.record.get("attempts") if self.record else None,
            "original_key": key, "original_key_encoding": key_encoding,
            "original_value": value, "original_value_encoding": value_encoding,
            "headers": [dict(zip(("key", "value", "encoding"), (k, *_printable(v, json_only=False))))
                        for k, v in self.headers],
            "replay_of": self.replay_of,
        }


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which dead letters an operator means: every criterion given must hold (any of its values).

    Nothing given selects everything (``--all``).
    """

    ids: frozenset[LetterId] = frozenset()
    codes: frozenset[str] = frozenset()
    request_ids: frozenset[str] = frozenset()
    since_ms: int | None = None

    def matches(self, entry: DlqEntry) -> bool:
        return ((not self.ids or entry.id in self.ids)
                and (not self.codes or entry.error_code in self.codes)
                and (not self.request_ids or entry.request_id in self.request_ids)
                and (self.since_ms is None or entry.failed_at_ms >= self.since_ms))

    def pick(self, entries: Iterable[DlqEntry]) -> list[DlqEntry]:
        """The matching entries, oldest failure first."""
        return sorted((e for e in entries if self.matches(e)), key=DlqEntry.sort_key)


def missing_ids(selection: Selection, entries: Iterable[DlqEntry]) -> list[LetterId]:
    """The ids asked for that name no record read from llm.dlq."""
    seen = {e.id for e in entries}
    return sorted(selection.ids - seen)


def count_by_code(entries: Iterable[DlqEntry]) -> dict[str, int]:
    """How many entries per error code, most frequent first (then by name)."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.error_code] = counts.get(entry.error_code, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# -- replay -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Replay:
    """One message to produce again."""

    letter: LetterId
    request_id: str | None
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...]
    encoding: str  # "avro", "json" or "raw" (not a request, forced)
    rewritten: bool = False


@dataclass(frozen=True, kw_only=True)
class Skip:
    """A selected dead letter that is not replayed, and why."""

    letter: LetterId
    request_id: str | None
    reason: str
    not_a_request: bool = False  # --force would replay it


@dataclass(frozen=True, kw_only=True)
class ReplayOptions:
    """``redirects``: source topics not to produce to again, and where their messages go instead (a
    dead letter written for a message on the router's internal accepted topic goes back through intake,
    to the request topic of its priority)."""

    to_topic: str | None = None
    fresh_deadline: bool = False
    force: bool = False
    now_ms: int = 0
    redirects: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ReplayPlan:
    replays: list[Replay] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)


def plan_replays(entries: Iterable[DlqEntry], letters: LetterFormat, options: ReplayOptions) -> ReplayPlan:
    """What replaying ``entries`` (oldest first) produces. One message is replayed once: from the
    latest of its dead letters among them, told apart by request_id or, without one, by the replay
    header of a copy that failed again."""
    entries = list(entries)
    outcomes = [plan_replay(entry, letters, options) for entry in entries]
    latest = {o.request_id: o.letter for o in outcomes if isinstance(o, Replay) and o.request_id is not None}
    selected = {str(entry.id) for entry in entries}
    failed_again = {e.replay_of: e.id for e in entries if e.replay_of in selected}
    plan = ReplayPlan()
    for outcome in outcomes:
        if isinstance(outcome, Skip):
            plan.skips.append(outcome)
        elif outcome.request_id is not None and latest[outcome.request_id] != outcome.letter:
            plan.skips.append(Skip(letter=outcome.letter, request_id=outcome.request_id,
                                   reason=f"the same request is replayed from its later dead letter "
                                          f"{latest[outcome.request_id]}"))
        elif str(outcome.letter) in failed_again:
            plan.skips.append(Skip(letter=outcome.letter, request_id=outcome.request_id,
                                   reason=f"it was replayed before and failed again as "
                                          f"{failed_again[str(outcome.letter)]}, which is replayed instead"))
        else:
            plan.replays.append(outcome)
    return plan


def plan_replay(entry: DlqEntry, letters: LetterFormat, options: ReplayOptions) -> Replay | Skip:
    """The message replaying ``entry`` produces, or why it is skipped."""
    def skip(reason: str, *, not_a_request: bool = False) -> Skip:
        return Skip(letter=entry.id, request_id=entry.request_id, reason=reason, not_a_request=not_a_request)

    if entry.record is None:
        return skip(f"the record on llm.dlq is unreadable ({entry.problem})")
    value = entry.original_value
    if value is None:
        return skip("it holds no original message (the router failed before it knew which message it was)")
    topic = options.to_topic or options.redirects.get(entry.source_topic, entry.source_topic)
    if not topic:
        return skip("it names no source topic; give one with --to")
    problem = letters.request_problem(value)
    if problem is not None and not options.force:
        return skip(f"not a request ({problem}); replaying it would only dead-letter it again "
                    f"(--force replays it anyway)", not_a_request=True)
    encoding = "raw" if problem is not None else letters.encoding(value)
    rewritten = options.fresh_deadline and problem is None
    if rewritten:
        value = letters.with_fresh_deadline(value, now_ms=options.now_ms)
    return Replay(letter=entry.id, request_id=entry.request_id, topic=topic, key=entry.original_key, value=value,
                  headers=replay_headers(entry.headers, entry.id), encoding=encoding, rewritten=rewritten)


def replay_headers(headers: Headers, letter: LetterId) -> Headers:
    """The upstream headers, with the replay header saying which dead letter this copy comes from
    (replacing the one of an earlier replay)."""
    return tuple((k, v) for k, v in headers if k != REPLAY_HEADER) + ((REPLAY_HEADER, str(letter).encode()),)


def fresh_deadline(request: Mapping[str, Any], *, now_ms: int) -> dict[str, Any]:
    """A decoded request that gets its whole timeout from ``now_ms``: created now, no absolute
    deadline (``timeout_ms``, when given, counts from now; else the router's default timeout)."""
    rewritten = {k: v for k, v in request.items() if k != "deadline_ms"}
    rewritten["created_at_ms"] = now_ms
    return rewritten


# -- helpers ------------------------------------------------------------------------------------------------


def _check_dead_letter(record: Mapping[str, Any]) -> None:
    """A JSON value decodes to any object: make sure it has a DeadLetter's required fields."""
    missing = [name for name in ("error_code", "reason", "failed_at_ms") if name not in record]
    if missing:
        raise ValueError(f"fields {missing} are missing")


def _as_bytes(value: Any) -> bytes | None:
    """A bytes field as bytes. A DeadLetter in JSON (``worker.result_encoding: json``) holds its bytes
    as strings of latin-1 code points (one per byte, as the codec's JSON writes them)."""
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("latin-1")


def _printable(data: bytes | None, *, json_only: bool) -> tuple[str | None, str | None]:
    """(text, "text") when ``data`` is UTF-8 (and, with ``json_only``, JSON), else (base64, "base64")."""
    if data is None:
        return None, None
    try:
        text = data.decode("utf-8")
        if json_only:
            json.loads(text)
        return text, "text"
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return base64.b64encode(data).decode("ascii"), "base64"
