"""Table declarations (RocksDB-backed via rocksdict, changelogged to Kafka).

``answered``: request_id -> the :class:`~llmrouter.core.stored.StoredAnswer`
(the encoded result plus a few bytes) kept when the request was answered. A
request delivered again (producer retry, redelivery after a crash) re-emits
it instead of calling a provider again. It is written only by the answer
agents, whose streams are keyed by request_id, and has as many partitions as
the internal accepted topics. Entries live for ``tables.idempotency_window_s``:
the changelog is ``compact,delete`` with that retention, RocksDB drops them
by TTL at compaction, and a reader ignores an older entry it still finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from llmrouter.settings import Settings
from llmrouter.topic_plan import min_insync_replicas

MIB = 1024 * 1024


@dataclass(frozen=True)
class Tables:
    answered: faust.Table


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    tables = settings.tables
    window_s = int(tables.idempotency_window_s)
    return Tables(
        answered=app.Table(
            "answered",
            # key_type=bytes makes faust keep keys raw (str keys are encoded as
            # UTF-8), as on the accepted topics: a request_id hashes to the same
            # partition everywhere, so table_route finds the owning worker.
            key_type=bytes,
            value_type=bytes,  # with key_type=bytes: raw bytes both ways
            partitions=settings.kafka.partitions,
            options={  # faust's defaults give each partition a 2 GiB block cache
                "ttl": window_s,
                "block_cache_size": tables.rocksdb_block_cache_mb * MIB,
                "write_buffer_size": tables.rocksdb_write_buffer_mb * MIB,
                "max_write_buffer_number": 2,
                "max_open_files": tables.rocksdb_max_open_files,
            },
            extra_topic_configs={
                "cleanup.policy": "compact,delete",
                "retention.ms": str(window_s * 1000),
                "min.insync.replicas": str(min_insync_replicas(settings.kafka.replication_factor,
                                                               settings.kafka.min_insync_replicas)),
            },
            help="request_id -> stored answer (idempotency)",
        ),
    )
