"""The pure side of ``llmrouter dlq``: ids, --since, selection, and what a replay produces."""

from __future__ import annotations

import base64
import json

import pytest

from llmrouter.wire.codec import MAGIC, Codec, encode_json
from llmrouter.core.dlq import (REPLAY_HEADER, UNREADABLE, DlqEntry, LetterId, Replay, ReplayOptions, Selection, Skip,
                                count_by_code, fresh_deadline, missing_ids, parse_letter_id, parse_since,
                                plan_replay, plan_replays)
from llmrouter.errors import ConfigError
from llmrouter.wire.dead_letters import WireLetters

NOW_MS = 1_750_000_000_000
CODEC = Codec()
LETTERS = WireLetters(CODEC)
JSON_REQUEST = b'{"request_id": "r-json", "prompt": "hi", "deadline_ms": 1000, "timeout_ms": 5000, "extra": "kept"}'


def avro_request(**fields) -> bytes:
    return CODEC.encode_avro("LLMRequest", {"request_id": "r-avro", "prompt": "hi", **fields})


def entry(partition: int = 0, offset: int = 0, *, value: bytes | None = JSON_REQUEST,
          code: str = "all_providers_unavailable", request_id: str | None = "r-json", failed_at_ms: int = NOW_MS,
          source_topic: str = "p.llm.requests.normal", key: bytes | None = b"k",
          headers: list | None = None) -> DlqEntry:
    """A DlqEntry decoded from a DeadLetter the way the router writes it (Avro)."""
    record = {"request_id": request_id, "source_topic": source_topic, "source_partition": 1, "source_offset": 7,
              "original_key": key, "original_value": value, "headers": headers or [], "reason": "why",
              "error_code": code, "attempts": 4, "failed_at_ms": failed_at_ms}
    return DlqEntry.decode(LETTERS, id=LetterId(partition, offset), key=None,
                           value=CODEC.encode_avro("DeadLetter", record), timestamp_ms=0)


@pytest.mark.parametrize("text, expected", [("0:42", LetterId(0, 42)), (" 3 : 7 ", LetterId(3, 7))])
def test_a_letter_id_is_partition_colon_offset(text, expected):
    """`P:O` parses to the partition and offset on llm.dlq, and prints back the same way."""
    assert parse_letter_id(text) == expected and str(expected) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["42", "a:1", "1:-2", "1:2:3", ""])
def test_anything_else_is_not_a_letter_id(text):
    """A malformed id is a ConfigError (exit 2) naming the expected form."""
    with pytest.raises(ConfigError, match="<partition>:<offset>"):
        parse_letter_id(text)


@pytest.mark.parametrize("text, back_ms", [("90s", 90_000), ("15m", 900_000), ("2h", 7_200_000),
                                           ("1d", 86_400_000), ("1w", 604_800_000), ("1h30m", 5_400_000),
                                           ("0.5h", 1_800_000)])
def test_since_a_duration_counts_back_from_now(text, back_ms):
    """Durations in s, m, h, d, w (and sums of them) are taken back from now."""
    assert parse_since(text, now_ms=NOW_MS) == NOW_MS - back_ms


def test_since_an_iso_time_is_utc_unless_it_says_otherwise():
    """An ISO 8601 time without a zone is UTC; with one, that zone."""
    assert parse_since("2025-06-01T12:00:00", now_ms=NOW_MS) == 1_748_779_200_000
    assert parse_since("2025-06-01T12:00:00Z", now_ms=NOW_MS) == 1_748_779_200_000
    assert parse_since("2025-06-01T14:00:00+02:00", now_ms=NOW_MS) == 1_748_779_200_000


@pytest.mark.parametrize("text", ["yesterday", "2x", "5", "1h 30"])
def test_since_anything_else_is_refused_with_the_accepted_forms(text):
    """Neither a duration nor an ISO time: ConfigError listing both forms."""
    with pytest.raises(ConfigError, match="neither a duration"):
        parse_since(text, now_ms=NOW_MS)


def test_a_selection_requires_every_criterion_given_and_any_of_its_values():
    """Codes OR codes, AND request ids, AND since; nothing given selects everything, oldest first."""
    a = entry(0, 1, code="all_providers_unavailable", request_id="a", failed_at_ms=NOW_MS - 10_000)
    b = entry(1, 1, code="undecodable", request_id=None, failed_at_ms=NOW_MS - 5_000)
    c = entry(0, 2, code="delivery_failed", request_id="c", failed_at_ms=NOW_MS - 20_000)
    assert Selection().pick([a, b, c]) == [c, a, b]
    assert Selection(codes=frozenset({"undecodable", "delivery_failed"})).pick([a, b, c]) == [c, b]
    assert Selection(codes=frozenset({"delivery_failed"}), request_ids=frozenset({"a"})).pick([a, b, c]) == []
    assert Selection(since_ms=NOW_MS - 10_000).pick([a, b, c]) == [a, b]
    assert Selection(ids=frozenset({LetterId(0, 2), LetterId(1, 1)})).pick([a, b, c]) == [c, b]


def test_ids_that_name_no_record_are_reported():
    """An id asked for but not read from llm.dlq is missing (the command exits 2 before producing)."""
    selection = Selection(ids=frozenset({LetterId(0, 1), LetterId(0, 9), LetterId(3, 0)}))
    assert missing_ids(selection, [entry(0, 1)]) == [LetterId(0, 9), LetterId(3, 0)]


def test_counts_by_code_are_most_frequent_first():
    """The summary line's counts: by error code, most frequent first, ties by name."""
    entries = [entry(code="b"), entry(code="a"), entry(code="c"), entry(code="c")]
    assert list(count_by_code(entries).items()) == [("c", 2), ("a", 1), ("b", 1)]


def test_a_record_that_is_not_a_dead_letter_is_listed_as_unreadable():
    """Garbage on llm.dlq does not stop the listing: it shows with its Kafka timestamp and the reason,
    and a replay skips it."""
    garbage = DlqEntry.decode(LETTERS, id=LetterId(0, 3), key=None, value=b"\x00junk", timestamp_ms=123)
    assert (garbage.error_code, garbage.failed_at_ms, garbage.request_id) == (UNREADABLE, 123, None)
    assert "not a DeadLetter" in garbage.reason
    assert isinstance(plan_replay(garbage, LETTERS, ReplayOptions(force=True)), Skip)


def test_the_json_view_gives_back_the_original_bytes():
    """--json: a JSON original value as its text, anything else as base64; keys and headers likewise."""
    as_text = entry(value=JSON_REQUEST, headers=[{"key": "trace", "value": b"t1"}, {"key": "bin", "value": b"\xff"},
                                                 {"key": "null", "value": None}]).as_json()
    assert as_text["original_value_encoding"] == "text" and as_text["original_value"].encode() == JSON_REQUEST
    assert as_text["headers"] == [{"key": "trace", "value": "t1", "encoding": "text"},
                                  {"key": "bin", "value": "/w==", "encoding": "base64"},
                                  {"key": "null", "value": None, "encoding": None}]
    avro = avro_request()
    as_b64 = entry(value=avro, key=b"\xfe").as_json()
    assert as_b64["original_value_encoding"] == "base64" and base64.b64decode(as_b64["original_value"]) == avro
    assert base64.b64decode(as_b64["original_key"]) == b"\xfe" and as_b64["id"] == "0:0"
    assert json.loads(json.dumps(as_b64))["failed_at"].endswith("Z")


def test_a_dead_letter_written_as_json_gives_back_the_same_bytes():
    """With worker.result_encoding json the router writes DeadLetters as JSON, bytes as latin-1 code
    points; they come back as the bytes they were."""
    value = avro_request()
    record = {"request_id": "r", "source_topic": "t", "original_key": b"\x00k", "original_value": value,
              "headers": [{"key": "h", "value": b"\xff"}], "reason": "why", "error_code": "x", "failed_at_ms": 5}
    read = DlqEntry.decode(LETTERS, id=LetterId(0, 0), key=None, value=encode_json(record), timestamp_ms=0)
    assert (read.original_value, read.original_key, read.headers) == (value, b"\x00k", (("h", b"\xff"),))


def test_a_replay_is_the_original_message_with_the_replay_header():
    """Without --fresh-deadline the value goes out byte for byte, with its key and headers, to its
    source topic; the header says which dead letter it comes from."""
    replay = plan_replay(entry(2, 9, headers=[{"key": "trace", "value": b"t1"}]), LETTERS, ReplayOptions(now_ms=NOW_MS))
    assert isinstance(replay, Replay)
    assert (replay.topic, replay.key, replay.value, replay.encoding) == ("p.llm.requests.normal", b"k", JSON_REQUEST,
                                                                         "json")
    assert replay.headers == (("trace", b"t1"), (REPLAY_HEADER, b"2:9")) and not replay.rewritten


def test_a_second_replay_replaces_the_header_of_the_first():
    """A request that failed again after a replay carries the old replay header: the new one replaces it."""
    old = [{"key": REPLAY_HEADER, "value": b"0:1"}, {"key": "trace", "value": b"t"}]
    replay = plan_replay(entry(1, 5, headers=old), LETTERS, ReplayOptions(to_topic="other"))
    assert replay.topic == "other" and replay.headers == (("trace", b"t"), (REPLAY_HEADER, b"1:5"))
    assert entry(headers=old).replay_of == "0:1"


def test_fresh_deadline_sets_created_now_and_drops_the_deadline_only():
    """created_at_ms becomes now, deadline_ms goes, timeout_ms and everything else stay."""
    request = {"request_id": "r", "prompt": "p", "deadline_ms": 5, "timeout_ms": 3000, "created_at_ms": 1}
    assert fresh_deadline(request, now_ms=NOW_MS) == {"request_id": "r", "prompt": "p", "timeout_ms": 3000,
                                                      "created_at_ms": NOW_MS}
    assert request["deadline_ms"] == 5  # the input is left alone


def test_a_json_request_stays_json_with_a_fresh_deadline():
    """JSON in, JSON out: unknown fields kept, the deadline gone, created now."""
    rewritten = LETTERS.with_fresh_deadline(JSON_REQUEST, now_ms=NOW_MS)
    assert json.loads(rewritten) == {"request_id": "r-json", "prompt": "hi", "timeout_ms": 5000, "extra": "kept",
                                     "created_at_ms": NOW_MS}


def test_an_avro_request_is_written_again_as_avro_with_a_fresh_deadline():
    """Avro single-object in, Avro single-object (current schema) out, readable by the router."""
    rewritten = LETTERS.with_fresh_deadline(avro_request(deadline_ms=1000, timeout_ms=5000, created_at_ms=1),
                                            now_ms=NOW_MS)
    assert rewritten[:2] == MAGIC
    decoded = CODEC.decode("LLMRequest", rewritten)
    assert (decoded["deadline_ms"], decoded["timeout_ms"], decoded["created_at_ms"]) == (None, 5000, NOW_MS)


def test_replay_with_fresh_deadline_rewrites_and_says_so():
    """--fresh-deadline: the produced value is the rewritten request, flagged as rewritten."""
    replay = plan_replay(entry(value=avro_request(deadline_ms=1)), LETTERS,
                         ReplayOptions(fresh_deadline=True, now_ms=NOW_MS))
    assert replay.rewritten and replay.encoding == "avro"
    assert CODEC.decode("LLMRequest", replay.value)["created_at_ms"] == NOW_MS


@pytest.mark.parametrize("value, why", [(b"\x00\x01 garbage", "undecodable"),
                                        (b'{"request_id": "r", "seed": -1, "prompt": "p"}', "invalid_request")])
def test_what_is_not_a_valid_request_is_skipped_unless_forced(value, why):
    """Undecodable or invalid values would only be dead-lettered again: skipped, saying why and that
    --force replays them; forced, they go out as they are (no rewrite is possible)."""
    skipped = plan_replay(entry(value=value, code=why), LETTERS, ReplayOptions(fresh_deadline=True))
    assert isinstance(skipped, Skip) and skipped.not_a_request and why in skipped.reason and "--force" in skipped.reason
    forced = plan_replay(entry(value=value, code=why), LETTERS, ReplayOptions(fresh_deadline=True, force=True))
    assert isinstance(forced, Replay) and forced.value == value and forced.encoding == "raw" and not forced.rewritten


def test_a_dead_letter_without_its_message_or_topic_cannot_be_replayed():
    """No original value (the router failed before it knew the message): skipped even when forced;
    no source topic: skipped unless --to names one."""
    assert "no original message" in plan_replay(entry(value=None), LETTERS, ReplayOptions(force=True)).reason
    assert "--to" in plan_replay(entry(source_topic=""), LETTERS, ReplayOptions()).reason
    assert isinstance(plan_replay(entry(source_topic=""), LETTERS, ReplayOptions(to_topic="t")), Replay)


def test_a_request_dead_lettered_twice_is_replayed_once_from_its_latest_dead_letter():
    """Two dead letters of one request in a selection: one replay (the later), the earlier skipped
    saying why; dead letters without a request_id are never merged."""
    first, later = entry(0, 1, failed_at_ms=NOW_MS - 1), entry(1, 4, failed_at_ms=NOW_MS)
    other = entry(0, 2, request_id=None)
    plan = plan_replays([first, other, later], LETTERS, ReplayOptions(force=True))
    assert [r.letter for r in plan.replays] == [LetterId(0, 2), LetterId(1, 4)]
    assert [(s.letter, "later dead letter 1:4" in s.reason) for s in plan.skips] == [(LetterId(0, 1), True)]


def test_a_message_without_request_id_that_failed_again_after_a_replay_is_replayed_once():
    """Garbage replayed with --force comes back as a new dead letter carrying the replay header: a
    later --force replay of both sends only the newer copy."""
    garbage = b"\x00\x01 garbage"
    first = entry(1, 0, value=garbage, request_id=None, code="undecodable")
    again = entry(1, 1, value=garbage, request_id=None, code="undecodable",
                  headers=[{"key": REPLAY_HEADER, "value": b"1:0"}])
    plan = plan_replays([first, again], LETTERS, ReplayOptions(force=True))
    assert [r.letter for r in plan.replays] == [LetterId(1, 1)]
    assert [(s.letter, "failed again as 1:1" in s.reason) for s in plan.skips] == [(LetterId(1, 0), True)]
    assert [r.letter for r in plan_replays([first], LETTERS, ReplayOptions(force=True)).replays] == [LetterId(1, 0)]


def test_a_message_dead_lettered_from_the_internal_accepted_topic_goes_back_through_intake():
    """A dead letter whose source is the router's internal accepted topic (a message intake never
    wrote) is replayed to the request topic of its priority, not to the internal topic; --to still wins."""
    redirects = {"p.llm.router.accepted.high": "p.llm.requests.high"}
    internal = entry(source_topic="p.llm.router.accepted.high")
    assert plan_replay(internal, LETTERS, ReplayOptions(redirects=redirects)).topic == "p.llm.requests.high"
    assert plan_replay(internal, LETTERS, ReplayOptions(redirects=redirects, to_topic="t")).topic == "t"
    assert plan_replay(entry(), LETTERS, ReplayOptions(redirects=redirects)).topic == "p.llm.requests.normal"


class _PlainLetters:
    """A LetterFormat without any codec: DeadLetters are Python dicts, a request is valid unless it says so."""

    def __init__(self, letters: dict[bytes, dict]) -> None:
        self._letters = letters

    def dead_letter(self, value):
        if value not in self._letters:
            raise ValueError("no such dead letter")
        return self._letters[value]

    def request_problem(self, value):
        return "invalid_request: says so" if value.startswith(b"bad") else None

    def encoding(self, value):
        return "plain"

    def with_fresh_deadline(self, value, *, now_ms):
        return value + f"@{now_ms}".encode()


def test_the_replay_plan_asks_its_letter_format_and_knows_no_encoding_itself():
    """core.dlq takes every encoding question to the LetterFormat it is given: any format that answers
    them (here one with no codec at all) yields a plan, with its encoding and its rewritten bytes."""
    good = {"request_id": "g", "source_topic": "t", "original_value": b"good", "reason": "why",
            "error_code": "x", "failed_at_ms": 5}
    letters = _PlainLetters({b"1": good, b"2": {**good, "request_id": "b", "original_value": b"bad"}})
    entries = [DlqEntry.decode(letters, id=LetterId(0, n), key=None, value=str(n).encode(), timestamp_ms=0)
               for n in (1, 2, 3)]
    assert entries[2].error_code == UNREADABLE and "no such dead letter" in entries[2].reason
    plan = plan_replays(entries, letters, ReplayOptions(fresh_deadline=True, now_ms=9))
    assert [(r.letter, r.value, r.encoding, r.rewritten) for r in plan.replays] == [(LetterId(0, 1), b"good@9",
                                                                                     "plain", True)]
    assert [s.letter for s in plan.skips] == [LetterId(0, 2), LetterId(0, 3)] and plan.skips[0].not_a_request
