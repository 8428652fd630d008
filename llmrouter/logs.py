"""structlog, configured once: JSON lines in production, readable on a terminal.

Lines go through the standard ``logging`` module, so they share Faust's
handlers and levels instead of being caught as stray stdout.
"""

from __future__ import annotations

import logging

import structlog


def configure_logging(fmt: str = "console", level: int = logging.INFO) -> None:
    """``console``: key=value after Faust's own time and level; ``json``: one self-contained JSON object."""
    if fmt == "json":
        processors = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                      structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors = [structlog.processors.format_exc_info,
                      structlog.processors.KeyValueRenderer(key_order=["event", "request_id"], drop_missing=True)]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *processors],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),  # through logging, as Faust's own lines go
        cache_logger_on_first_use=True,
    )
