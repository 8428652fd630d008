"""Traces: W3C trace context carried through Kafka headers, spans made with OpenTelemetry.

A request's trace runs from its producer to its result::

    producer ──traceparent──► intake span ─┬─ cache.lookup span
                                           └─ forward (llmrouter-traceparent) ──► answer span
                                                  └─ dispatch span ─┬─ provider.call span (each attempt)
                                                                    └─ ...
    result, stream chunks, dead letter, events ◄── traceparent of the span that wrote them

Intake continues the producer's trace when its request carries a valid
``traceparent`` header, and starts one otherwise. The forward to the
accepted topic carries intake's span as ``llmrouter-traceparent`` (one of
the envelope's own headers, :mod:`llmrouter.wire.envelope`): upstream's own
``traceparent`` travels on untouched, so a dead letter still holds exactly
the headers upstream sent, and a replay of it joins the producer's trace.
Everything the router writes while a span is current carries ``traceparent``
(:func:`trace_headers`).

Spans and their ids are made by the OpenTelemetry SDK whatever the exporter,
``none`` included: the ids are what the logs carry (:func:`add_trace_ids`) and
what the results hand back, and making a span costs microseconds. The
exporter only decides where finished spans go: ``none``, ``console`` (one JSON
object a line on stdout, in the worker's log) or ``otlp`` (an OpenTelemetry
collector over HTTP; needs the ``otlp`` extra). Each app gets a provider of
its own, never the process-global one, so several apps in one process (tests)
do not share their spans.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mode
import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmrouter.wire.envelope import TRACE_PREFIX, Headers, normalize_headers
from llmrouter.errors import ConfigError

__all__ = ["Tracing", "SpanKind", "add_trace_ids", "bind_request", "consumed", "extract", "forward_headers",
           "trace_headers"]

EXPORT_DELAY_MS = 1000  # finished spans are exported in batches this often, off the event loop
_PROPAGATOR = TraceContextTextMapPropagator()  # W3C traceparent + tracestate, nothing else


class Tracing(mode.Service):
    """One app's tracer, and the exporter its finished spans go to (flushed when the worker stops)."""

    def __init__(self, provider: TracerProvider, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider = provider
        self.tracer = provider.get_tracer("llmrouter")

    @classmethod
    def build(cls, *, exporter: str = "none", service_name: str = "llm-router", otlp_endpoint: str | None = None,
              processor: SpanProcessor | None = None, **kwargs: Any) -> Tracing:
        """``exporter``: none | console | otlp. ``processor`` (tests): one more place for finished spans."""
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        chosen = _exporter(exporter, otlp_endpoint)
        if chosen is not None:
            provider.add_span_processor(BatchSpanProcessor(chosen, schedule_delay_millis=EXPORT_DELAY_MS))
        if processor is not None:
            provider.add_span_processor(processor)
        return cls(provider, **kwargs)

    @contextmanager
    def span(self, name: str, *, parent: Context | None = None, kind: SpanKind = SpanKind.INTERNAL,
             attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span]:
        """A span, current while the block runs: a child of ``parent`` when given, else of the current span
        (a new trace when there is none). An exception leaving the block is recorded on it."""
        with self.tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as span:
            yield span

    @contextmanager
    def consuming(self, name: str, message: Any, *, prefix: str = "") -> Iterator[trace.Span]:
        """The span of handling one consumed Kafka ``message`` (its topic, partition, offset and headers),
        continuing the trace its headers carry (``prefix``: the router's own copy of the context,
        ``llmrouter-``) or starting one."""
        headers = normalize_headers(message.headers)
        with self.span(name, parent=extract(headers, prefix=prefix) or Context(), kind=SpanKind.CONSUMER,
                       attributes=consumed(message.topic, message.partition, message.offset)) as span:
            yield span

    async def on_stop(self) -> None:
        """Export what is still buffered (blocking: the exporter's own thread is joined)."""
        await asyncio.to_thread(self.provider.shutdown)


def _exporter(name: str, otlp_endpoint: str | None) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        # one line a span, to the stdout of now (the exporter's default is the one of when it was imported)
        return ConsoleSpanExporter(out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n")
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError("tracing.exporter is otlp but the OTLP exporter is not installed: "
                              "pip install 'llm-router[otlp]' (opentelemetry-exporter-otlp-proto-http)") from exc
        return OTLPSpanExporter(endpoint=otlp_endpoint) if otlp_endpoint else OTLPSpanExporter()
    raise ConfigError(f"tracing.exporter is none, console or otlp, not {name!r}")


def extract(headers: Headers, *, prefix: str = "") -> Context | None:
    """The trace context in Kafka headers (``<prefix>traceparent``), or None when there is none valid."""
    carrier = {}
    for key, value in headers:
        if key.startswith(prefix) and value is not None:
            carrier[key[len(prefix):]] = value.decode("latin-1")
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def trace_headers(*, prefix: str = "") -> list[tuple[str, bytes]]:
    """The current span's context as Kafka headers (none when no span is current)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [(f"{prefix}{key}", value.encode("latin-1")) for key, value in carrier.items()]


def forward_headers() -> list[tuple[str, bytes]]:
    """The router's own copy of the current context, for the forward to the accepted topic."""
    return trace_headers(prefix=TRACE_PREFIX)


def consumed(topic: str, partition: int, offset: int) -> dict[str, str | int]:
    """The span attributes of a consumed message (OpenTelemetry's messaging conventions)."""
    return {"messaging.system": "kafka", "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition), "messaging.kafka.offset": offset}


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span in W3C's hex form, or None."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def add_trace_ids(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: ``trace_id`` and ``span_id`` of the span current when the line is logged."""
    ids = current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def bind_request(request_id: str) -> None:
    """From here on, every line this task logs names ``request_id``, and so does the current span.

    structlog's contextvars are per task, and every job runs in a task of its own
    (:class:`~llmrouter.runtime.inflight.Lane`): one request's id never lands on another's lines.
    """
    structlog.contextvars.bind_contextvars(request_id=request_id)
    trace.get_current_span().set_attribute("llm.request_id", request_id)
