"""Table declarations (RocksDB-backed via rocksdict, changelogged to Kafka).

``answered``: request_id -> the :class:`~llmrouter.core.stored.StoredAnswer`
(the encoded result plus a few bytes) kept when the request was answered. A
request delivered again (producer retry, redelivery after a crash) re-emits
it instead of calling a provider again. It is written only by the answer
agents, whose streams are keyed by request_id, and has as many partitions as
the internal accepted topics. Entries live for ``tables.idempotency_window_s``:
the changelog is ``compact,delete`` with that retention, RocksDB drops them
by TTL at compaction, and a reader ignores an older entry it still finds.

``streamed``: request_id -> a mark that a delivery of the request sent stream
chunks (llmrouter/runtime/stream_marks.py): a later delivery's first chunk then
says ``restart``. Partitioned, kept and expired like ``answered``.

``provider_state``: provider -> its breaker and 429 wait as the group sees them
(JSON), written by its owner only (agents/provider_state.py); every worker
follows the changelog (llmrouter/dispatch/fleet.py).

``ledger``: ``<scope>:<name>:<period>:p<partition>`` -> an account (JSON): what
a provider, a user or a budget spent and holds reserved, per partition of the
accepted topics (llmrouter/dispatch/budgets.py says why per partition). Never expires:
a month's accounts are the usage history.

``outcome_windows``: ``<subject>@<window start ms>`` -> a window's aggregate and the
last batch taken from each sender (JSON, llmrouter/core/windows.py), and
``alert_state``: ``<rule>|<subject>`` -> the rule's state for that subject
(llmrouter/core/alerts.py). Both are written only by the owner agent of
llm.router.outcomes (agents/windows.py), in the subject's partition; only when
``windows.enabled``. Windows are deleted after ``windows.retention_s`` (and
their changelog is ``compact,delete``); alert states are kept while they matter.

This folder is installed as ``llmrouter.tables`` (``package-dir`` in
pyproject.toml maps it into the llmrouter namespace, so no package named
``tables`` lands at the top of site-packages): import it as
``llmrouter.tables``; there is no ``llmrouter/tables/`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from llmrouter.config.settings import Settings
from llmrouter.runtime.topic_plan import min_insync_replicas
from llmrouter.topics import windows_retention_ms

MIB = 1024 * 1024


@dataclass(frozen=True)
class Tables:
    answered: faust.Table
    provider_state: faust.Table
    ledger: faust.Table
    streamed: faust.Table
    windows: faust.Table | None = None  # only when settings.windows.enabled
    alert_state: faust.Table | None = None


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    tables = settings.tables
    window_s = int(tables.idempotency_window_s)
    min_isr = str(min_insync_replicas(settings.kafka.replication_factor, settings.kafka.min_insync_replicas))
    small = {"block_cache_size": MIB, "write_buffer_size": MIB, "max_write_buffer_number": 2, "max_open_files": 16}

    def state(name: str, help_text: str) -> faust.Table:
        """A small table of JSON values, kept until overwritten (a compacted changelog)."""
        return app.Table(name, key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions,
                         options=small, extra_topic_configs={"cleanup.policy": "compact", "min.insync.replicas": min_isr},
                         help=help_text)

    windows_on = settings.windows.enabled
    return Tables(
        windows=app.Table(
            "outcome_windows", key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions, options=small,
            extra_topic_configs={"cleanup.policy": "compact,delete", "min.insync.replicas": min_isr,
                                 "retention.ms": str(windows_retention_ms(settings))},
            help="subject@window start -> outcomes counted in that window") if windows_on else None,
        alert_state=state("alert_state", "rule|subject -> the alert rule's state (ok, pending, firing)")
        if windows_on else None,
        provider_state=state("provider_state", "provider -> its breaker and 429 wait, as the group sees them"),
        ledger=state("ledger", "scope:name:period:partition -> spent and reserved (cost ledger, budgets)"),
        streamed=app.Table(
            "streamed", key_type=bytes, value_type=bytes, partitions=settings.kafka.partitions,
            options={**small, "ttl": window_s},
            extra_topic_configs={"cleanup.policy": "compact,delete", "retention.ms": str(window_s * 1000),
                                 "min.insync.replicas": min_isr},
            help="request_id -> a delivery of it sent stream chunks (a later one restarts the stream)"),
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
                "min.insync.replicas": min_isr,
            },
            help="request_id -> stored answer (idempotency)",
        ),
    )
