"""Logs: JSON lines that name the request and the trace they were logged for, and one canonical line per result."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from llmrouter.observability.logs import configure_logging, json_formatter
from llmrouter.observability.request_log import canonical_fields, request_answered
from llmrouter.observability.tracing import Tracing, bind_request


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """structlog in ``json`` with the worker's JSON handler on the root logger, writing to a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    level, root.level = root.level, logging.INFO
    root.addHandler(handler)
    configure_logging("json")
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.level = level
        structlog.reset_defaults()


def parsed(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_every_line_logged_while_a_request_is_handled_names_it_and_its_trace(json_lines):
    """Two requests handled at once, each in its task and span: each line carries its own request_id and
    trace_id, another library's line logged meanwhile too; a line logged outside carries neither."""
    tracing = Tracing.build()
    log = structlog.get_logger("llmrouter.test")

    async def handle(request_id: str) -> str:
        with tracing.span("answer") as span:
            bind_request(request_id)
            log.info("step_one")
            await asyncio.sleep(0.01)  # the other request logs meanwhile
            logging.getLogger("faust.test").warning("a line of faust's")
            log.info("step_two", detail=1)
            return f"{span.get_span_context().trace_id:032x}"

    traces = dict(zip(("r-1", "r-2"), await asyncio.gather(handle("r-1"), handle("r-2"))))
    log.info("between_requests")
    lines = parsed(json_lines)
    assert len(lines) == 7
    for line in lines[:-1]:
        assert line["trace_id"] == traces[line["request_id"]] and len(line["span_id"]) == 16
        assert line["level"] in ("info", "warning") and line["timestamp"].endswith("Z")
    assert {line["logger"] for line in lines if line["event"] == "a line of faust's"} == {"faust.test"}
    assert "request_id" not in lines[-1] and "trace_id" not in lines[-1]


def test_the_canonical_line_says_how_a_request_ended_who_answered_how_long_and_at_what_cost(json_lines):
    """One info line from the result record: latencies renamed, attempts counted, empty fields left out."""
    record = {"request_id": "r-9", "status": "ok", "priority": "high", "route": "cloud", "provider": "openai",
              "model": "gpt", "total_latency_ms": 812.5, "queue_latency_ms": 3.0, "prompt_tokens": 12,
              "completion_tokens": 30, "cost_usd": 0.0021, "error_code": None, "text": "the answer",
              "attempts": [{"provider": "together"}, {"provider": "openai"}]}
    request_answered("answer", record)
    (line,) = parsed(json_lines)
    assert line == {"event": "request_answered", "level": "info", "logger": "llmrouter.requests",
                    "timestamp": line["timestamp"], "stage": "answer",
                    "status": "ok", "priority": "high", "route": "cloud", "provider": "openai", "model": "gpt",
                    "latency_ms": 812.5, "queue_ms": 3.0, "prompt_tokens": 12, "completion_tokens": 30,
                    "cost_usd": 0.0021, "attempts": 2}


def test_a_stored_result_sent_again_is_a_canonical_line_marked_replayed():
    """No record at hand (the stored bytes go out as they are): the fields given say what is known."""
    assert canonical_fields({}) == {}
    assert canonical_fields({"status": "rejected", "error_code": "budget_exceeded", "attempts": []}) == {
        "status": "rejected", "error_code": "budget_exceeded", "attempts": 0}


def test_console_lines_stay_key_value_with_the_request_and_trace_first(caplog):
    """On a terminal: event, request_id, trace_id, then the rest, as key=value."""
    configure_logging("console")
    try:
        with caplog.at_level(logging.INFO), Tracing.build().span("intake") as span:
            bind_request("r-3")
            structlog.get_logger("llmrouter.test").info("hello", n=1)
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert [r.getMessage() for r in caplog.records] == [
        f"event='hello' request_id='r-3' trace_id='{trace_id}' n=1 span_id='{span.get_span_context().span_id:016x}'"]
