"""The canonical log line: one ``request_answered`` line per result the router sends.

Whatever path a request takes (answered by a provider, from the cache at
intake, refused, failed, a stored result sent again), the line written when
its result goes out says everything an operator asks first: how it ended
(status, error_code), who answered (route, provider, model, cache_level), how
long it took (latency_ms, queue_ms), what it cost (tokens, cost_usd) and how
many provider attempts that took. Its request_id and trace_id come from the
task's context (:func:`llmrouter.observability.tracing.bind_request`), so the line leads to
the request's other lines and to its trace.

Why ``info``: it is the one line per request meant to be always on, the
line dashboards and searches are built from; the stages' other per-request
lines stay at ``debug``. One line per result costs a few tens of
microseconds, small beside a request's Kafka round trips.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

log = structlog.get_logger("llmrouter.requests")

EVENT = "request_answered"
_NAMED = {"total_latency_ms": "latency_ms", "queue_latency_ms": "queue_ms"}
_KEPT = ("status", "priority", "route", "provider", "model", "cache_level", "error_code", "total_latency_ms",
         "queue_latency_ms", "prompt_tokens", "completion_tokens", "cost_usd")


def canonical_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the canonical line taken from an LLMResult record: those it has, ``None``s left out."""
    fields = {_NAMED.get(key, key): record[key] for key in _KEPT if record.get(key) is not None}
    if record.get("attempts") is not None:
        fields["attempts"] = len(record["attempts"])
    return fields


def request_answered(stage: str, record: Mapping[str, Any] | None = None, **fields: Any) -> None:
    """Log the canonical line of a result sent by ``stage`` (intake | answer); ``fields`` add to or replace
    what ``record`` says (``replayed=True`` for a stored result sent again)."""
    log.info(EVENT, stage=stage, **{**canonical_fields(record or {}), **fields})
