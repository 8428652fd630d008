"""Table declarations (RocksDB-backed via rocksdict, changelogged to Kafka).

``answered``: request_id -> the LLMResult record stored when the request was
answered. A request delivered again (producer retry, redelivery after a crash)
re-emits this stored result instead of calling a provider again. It is
written only by the answer agents, whose streams are keyed by request_id, and
has as many partitions as the internal accepted topics.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from llmrouter.settings import Settings


@dataclass(frozen=True)
class Tables:
    answered: faust.Table


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    return Tables(
        answered=app.Table(
            "answered",
            # key_type=bytes makes faust keep keys raw (str keys are encoded as
            # UTF-8), as on the accepted topics: a request_id hashes to the same
            # partition everywhere, so table_route finds the owning worker.
            key_type=bytes,
            value_type=None,  # JSON: the LLMResult record as a dict
            partitions=settings.kafka.partitions,
            help="request_id -> stored LLMResult (idempotency)",
        ),
    )
