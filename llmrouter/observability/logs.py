"""structlog, configured once: JSON lines in production, readable on a terminal.

Lines go through the standard ``logging`` module, so they share Faust's
handlers and levels instead of being caught as stray stdout. In ``json`` the
worker's handler renders every line as one JSON object, Faust's and aiokafka's
own lines too (:func:`worker_logging_config`), so a log can be read by a
machine line by line; in ``console`` Faust's format is kept.

Every line logged while a request is handled names its ``request_id``
(bound per task by :func:`llmrouter.observability.tracing.bind_request`) and the
``trace_id`` of the span current then (:func:`llmrouter.observability.tracing.add_trace_ids`).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

from llmrouter.observability.tracing import add_trace_ids

_STAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)


def configure_logging(fmt: str = "console", level: int = logging.INFO) -> None:
    """``console``: key=value after Faust's own time and level; ``json``: one self-contained JSON object."""
    if fmt == "json":
        processors = [structlog.processors.add_log_level, structlog.stdlib.add_logger_name, _STAMP,
                      structlog.processors.format_exc_info,
                      structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
    else:
        processors = [structlog.processors.format_exc_info,
                      structlog.processors.KeyValueRenderer(key_order=["event", "request_id", "trace_id"],
                                                            drop_missing=True)]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, add_trace_ids, *processors],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),  # through logging, as Faust's own lines go
        cache_logger_on_first_use=True,
    )


def json_formatter() -> logging.Formatter:
    """Renders every record as one JSON object: a line of ours as structlog built it, another library's
    (Faust, aiokafka) with its level, logger name, time and message, and the request and trace it ran for."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, add_trace_ids, structlog.processors.add_log_level,
                           structlog.stdlib.add_logger_name, _STAMP, structlog.processors.format_exc_info])


def worker_logging_config(fmt: str) -> dict[str, Any] | None:
    """The ``logging_config`` of a faust Worker: for ``json``, its handler renders every record with
    :func:`json_formatter`; None keeps Faust's own format."""
    if fmt != "json":
        return None
    return {
        "merge": True,  # over mode's config: its handler named "default" is replaced, the root keeps using it
        "formatters": {"json": {"()": json_formatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json"}},
    }
