"""`llmrouter loadtest` without Kafka: loopback only, the router's topics under the prefix, how a result is read."""

from __future__ import annotations

import io

import pytest

from llmrouter.wire.codec import Codec, encode_json
from llmrouter.errors import ConfigError
from llmrouter.commands.loadtest import QUIET_TICKS, ProgressPrinter, check_loopback, router_target
from llmrouter.loadtest.display import Progress
from llmrouter.loadtest.stats import Answer
from llmrouter.runtime.publisher import REPLAY_HEADER
from llmrouter.config.settings import load_settings


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9092", "localhost:9092", "[::1]:9092",
                                       "127.0.0.1:9092,127.0.0.2:9093"])
def test_a_broker_on_this_machine_is_accepted(bootstrap):
    """Loopback addresses and localhost, alone or several, pass."""
    check_loopback(bootstrap)


@pytest.mark.parametrize("bootstrap", ["10.0.0.5:9092", "kafka.prod.example:9092", "127.0.0.1:9092,10.1.1.1:9092"])
def test_any_other_broker_is_refused(bootstrap):
    """A load test is never pointed at a shared cluster by mistake."""
    with pytest.raises(ConfigError, match="loopback"):
        check_loopback(bootstrap)


def test_the_router_target_uses_the_topic_prefix(tmp_path):
    """Requests go to the prefixed llm.requests.<priority>, answers are read from the prefixed llm.results."""
    path = tmp_path / "settings.yaml"
    path.write_text("kafka: {topic_prefix: 'x7.'}\n")
    target = router_target(load_settings(path, env={}))
    assert target.request_topics == {p: f"x7.llm.requests.{p}" for p in ("critical", "high", "normal", "low")}
    assert target.results_topic == "x7.llm.results"


def test_a_result_is_read_in_avro_or_json_with_its_path_and_replay_header():
    """An LLMResult, Avro or JSON, gives its request_id, status, route, cache level, error code and replay header."""
    read = router_target(load_settings(None, env={})).read_answer
    record = {"request_id": "lt1-4", "status": "ok", "route": "cache", "cache_level": "l2", "completed_at_ms": 1}
    assert read(b"lt1-4", Codec().encode_avro("LLMResult", record), None) == (
        "lt1-4", Answer(status="ok", route="cache", cache_level="l2"))
    failed = {"request_id": "lt1-5", "status": "error", "error_code": "all_providers_unavailable"}
    assert read(b"lt1-5", encode_json(failed), [(REPLAY_HEADER, b"1")]) == (
        "lt1-5", Answer(status="error", route="none", error_code="all_providers_unavailable", replay=True))


def test_a_result_that_cannot_be_decoded_is_an_error_answer_not_a_crash():
    """Garbage under one of the run's keys is counted as an error answer for that request."""
    rid, answer = router_target(load_settings(None, env={})).read_answer(b"lt1-6", b"\x00garbage", None)
    assert rid == "lt1-6" and (answer.status, answer.error_code) == ("error", "undecodable_result")


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def look(n: int) -> Progress:
    return Progress(label="router", phase="sending", elapsed_s=float(n), sent=n, expected=10, answered=n,
                    interval_s=1.0, recent_answers=1, recent_p95_ms=1.0, p95_ms=1.0)


def test_progress_is_rewritten_in_place_on_a_terminal_and_printed_every_few_ticks_elsewhere():
    """A terminal gets one line redrawn each tick and a newline at the end; a log gets a line every QUIET_TICKS."""
    tty, log = Stream(tty=True), Stream(tty=False)
    for printer_stream in (tty, log):
        printer = ProgressPrinter(printer_stream)
        for n in range(1, 2 * QUIET_TICKS + 1):
            printer(look(n))
        printer.end()
    assert tty.getvalue().count("\r\x1b[K") == 2 * QUIET_TICKS and tty.getvalue().endswith("\n")
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert lines[0].startswith("[##") and " sent 1/10 " in lines[0]
    assert f" sent {QUIET_TICKS + 1}/10 " in lines[1]
