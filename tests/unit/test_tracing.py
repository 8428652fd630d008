"""Trace context through Kafka headers, and the spans of a dispatch, caught by the SDK's in-memory exporter.

The providers stand in for cloud APIs at the provider interface, as in test_dispatch.py.
"""

from __future__ import annotations

import random
import sys
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmrouter.dispatch.dispatcher import Dispatcher
from llmrouter.dispatch.attempts import ChainEntry
from llmrouter.wire.envelope import TRACE, Origin, origin_of_forwarded
from llmrouter.errors import ConfigError, ProviderUnavailable
from llmrouter.providers.base import Prompt
from llmrouter.core.retry import RetryPolicy
from llmrouter.observability.tracing import Tracing, extract, forward_headers, trace_headers
from tests.unit.test_dispatch import Scripted

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01".encode()


@pytest.fixture
def caught() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing.build(processor=SimpleSpanProcessor(exporter)), exporter


def message(headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    """What a consumed faust message offers the tracing: where it is, and its headers."""
    return SimpleNamespace(topic="llm.requests.normal", partition=1, offset=42, headers=headers)


def test_a_consumed_message_with_a_traceparent_continues_the_producers_trace(caught):
    """The span's trace is the producer's and its parent the producer's span; a consumer span says where from."""
    tracing, exporter = caught
    with tracing.consuming("intake", message([("traceparent", TRACEPARENT)])):
        pass
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == PRODUCER_TRACE
    assert f"{span.parent.span_id:016x}" == PRODUCER_SPAN and span.parent.is_remote
    assert span.attributes["messaging.destination.name"] == "llm.requests.normal"
    assert span.attributes["messaging.kafka.offset"] == 42


def test_a_trace_the_producer_does_not_sample_is_carried_on_but_not_recorded(caught):
    """traceparent flags 00: no span is exported, and what the router writes stays in the producer's trace,
    unsampled, so the producer's own sampling decision holds downstream."""
    tracing, exporter = caught
    unsampled = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-00".encode()
    with tracing.consuming("intake", message([("traceparent", unsampled)])):
        ((name, value),) = trace_headers()
    _version, trace_id, span_id, flags = value.decode().split("-")
    assert (name, trace_id, flags) == ("traceparent", PRODUCER_TRACE, "00") and span_id != PRODUCER_SPAN
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("headers", [[], [("traceparent", b"not-a-traceparent")], [("other", b"x")]],
                         ids=["none", "malformed", "unrelated"])
def test_a_message_without_a_valid_traceparent_starts_a_trace_of_its_own(caught, headers):
    """No valid context in the headers: a new trace, with no parent."""
    tracing, exporter = caught
    with tracing.consuming("intake", message(headers)):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None and span.context.trace_id != int(PRODUCER_TRACE, 16)


def test_a_consumer_span_never_hangs_under_a_span_current_in_the_consuming_task(caught):
    """The agent's own context is not the message's: a message without a context starts a trace."""
    tracing, exporter = caught
    with tracing.span("agent loop"), tracing.consuming("intake", message([])):
        pass
    inner = next(s for s in exporter.get_finished_spans() if s.name == "intake")
    assert inner.parent is None


def test_the_forward_carries_the_routers_context_under_its_own_names_and_upstreams_stays_as_it_came(caught):
    """The accepted topic's copy: llmrouter-traceparent is intake's span (the answer stage continues from it),
    the upstream traceparent travels unchanged, and the origin rebuilt from it holds only upstream's headers."""
    tracing, _ = caught
    origin = Origin(topic="llm.requests.normal", partition=0, offset=7, key=None, value=b"{}",
                    headers=(("traceparent", TRACEPARENT), ("llmrouter-traceparent", b"forged")))
    with tracing.consuming("intake", message(list(origin.headers))) as span:
        forwarded = origin.forward_headers() + forward_headers()
        ours = f"{span.get_span_context().span_id:016x}"
    assert {name for name, _ in forward_headers()} <= TRACE
    assert ("traceparent", TRACEPARENT) in forwarded
    (carried,) = [v for k, v in forwarded if k == "llmrouter-traceparent"]
    assert carried.decode().split("-")[1:3] == [PRODUCER_TRACE, ours]
    assert origin_of_forwarded(origin.value, tuple(forwarded)).headers == (("traceparent", TRACEPARENT),)
    parent = extract(tuple(forwarded), prefix="llmrouter-")
    assert parent is not None


def test_nothing_is_injected_when_no_span_is_current():
    """Outside any span (a timer, a command) the router's records carry no traceparent."""
    assert trace_headers() == [] and extract(()) is None


async def test_a_dispatch_is_a_span_and_each_provider_attempt_a_child_of_it(caught):
    """A retry and a fallback: three provider.call spans under one dispatch span, under the request's span,
    each saying its provider and how it ended."""
    tracing, exporter = caught
    flaky = Scripted("hf", errors=[ProviderUnavailable("503", provider="hf")] * 2)
    spare = Scripted("together")
    entries = {"hf": ChainEntry(flaky, retry=RetryPolicy(attempts=1, base_s=0.001, cap_s=0.001)),
               "together": ChainEntry(spare)}
    dispatcher = Dispatcher(entries, rng=random.Random(7), tracer=tracing.tracer)
    with tracing.consuming("answer", message([("llmrouter-traceparent", TRACEPARENT)]), prefix="llmrouter-"):
        outcome = await dispatcher.dispatch(Prompt(text="hi", max_tokens=4), ["hf", "together"], time_left_s=5)
    assert outcome.provider == "together"
    spans = {s.context.span_id: s for s in exporter.get_finished_spans()}
    calls = sorted((s for s in spans.values() if s.name == "provider.call"), key=lambda s: s.start_time)
    (dispatch,) = [s for s in spans.values() if s.name == "dispatch"]
    (answer,) = [s for s in spans.values() if s.name == "answer"]
    assert [(c.attributes["llm.provider"], c.attributes["llm.outcome"]) for c in calls] == [
        ("hf", "error"), ("hf", "error"), ("together", "ok")]
    assert calls[0].attributes["llm.error_code"] == "provider_unavailable"
    assert all(c.parent.span_id == dispatch.context.span_id for c in calls)
    assert dispatch.parent.span_id == answer.context.span_id
    assert f"{answer.parent.span_id:016x}" == PRODUCER_SPAN
    assert {f"{s.context.trace_id:032x}" for s in spans.values()} == {PRODUCER_TRACE}
    assert dispatch.attributes["llm.provider"] == "together" and dispatch.attributes["llm.attempts"] == 3


async def test_a_stream_chunk_sent_during_a_call_carries_the_calls_span(caught):
    """on_delta runs inside the provider.call span: a chunk's traceparent names that span."""
    tracing, exporter = caught
    seen: list[list[tuple[str, bytes]]] = []

    async def on_delta(seq, delta, final, provider, restart):
        seen.append(trace_headers())

    dispatcher = Dispatcher({"hf": ChainEntry(Scripted("hf"))}, tracer=tracing.tracer)
    await dispatcher.dispatch(Prompt(text="hi", max_tokens=4), ["hf"], time_left_s=5, on_delta=on_delta)
    (call,) = [s for s in exporter.get_finished_spans() if s.name == "provider.call"]
    ids = f"{call.context.trace_id:032x}-{call.context.span_id:016x}"
    assert seen and all(len(h) == 1 and h[0][0] == "traceparent" and h[0][1].decode()[3:-3] == ids for h in seen)


def test_an_exporter_that_is_not_installed_or_not_known_is_refused_with_a_sentence(monkeypatch):
    """otlp without its package names the extra to install; an unknown name lists the known ones."""
    with pytest.raises(ConfigError, match="none, console or otlp"):
        Tracing.build(exporter="zipkin")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)  # not installed
    with pytest.raises(ConfigError, match=r"llm-router\[otlp\]"):
        Tracing.build(exporter="otlp")


def test_the_console_exporter_writes_one_json_object_a_line(capsys):
    """What the worker's log holds with tracing.exporter: console: each span on one line of JSON."""
    import json

    tracing = Tracing.build(exporter="console", service_name="router-under-test")
    with tracing.span("intake"), tracing.span("cache.lookup"):
        pass
    tracing.provider.shutdown()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["name"] for line in lines] == ["cache.lookup", "intake"]
    assert lines[0]["resource"]["attributes"]["service.name"] == "router-under-test"
    assert lines[0]["parent_id"] == lines[1]["context"]["span_id"]
