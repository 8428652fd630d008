"""The worker's own sections: Kafka, Redis, the worker process, request limits, tables, tracing.

Parts of :class:`~llmrouter.config.settings.Settings`; each field names its unit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from llmrouter.config.types import Section
from llmrouter.core.sizes import BROKER_MESSAGE_MAX_BYTES
from llmrouter.wire.contract import FieldCaps

REBALANCE_TIMEOUT_S = 60.0  # how long the group waits for a member to rejoin a rebalance


class TopicRetention(Section):
    """How long each topic keeps its records before Kafka deletes them (``retention.ms``), in hours.

    llm.providers has no retention: it is compacted, a registration is never deleted by time.
    """

    requests_hours: float = Field(7 * 24, gt=0, description="llm.requests.<priority> and the internal "
                                  "llm.router.accepted.<priority>: long enough to outlive an outage of the workers")
    results_hours: float = Field(3 * 24, gt=0, description="llm.results: for requesters that read late")
    stream_hours: float = Field(1, gt=0, description="llm.stream: token chunks matter only while a request streams")
    dlq_hours: float = Field(14 * 24, gt=0, description="llm.dlq: long enough to replay from")
    events_hours: float = Field(7 * 24, gt=0, description="llm.events: the audit trail")
    alerts_hours: float = Field(7 * 24, gt=0, description="llm.alerts")


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    request_partitions: int = Field(4, ge=1, description="partitions of each llm.requests.<priority> topic")
    partitions: int = Field(4, ge=1, description="partitions of results, stream, dlq, events, alerts and internal topics")
    replication_factor: int = Field(1, ge=1)
    min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of the router's topics; None: 1 for replication factor 1, "
                                "else replication_factor - 1 capped at 2")
    retention: TopicRetention = TopicRetention()
    max_record_bytes: int = Field(
        1_000_000, ge=65_536, le=BROKER_MESSAGE_MAX_BYTES,
        description="the largest record the router writes (key, value, headers and an 82-byte record overhead, "
                    "llmrouter/core/sizes.py): the producer's max_request_size and every size check read it; at "
                    "most the broker's message.max.bytes (1,048,588 by default)")
    new_group_lookback_s: float = Field(
        600, ge=0, description="a consumer group with no committed offset starts at the requests produced this "
                               "recently, not at the start of the retained week")

    @model_validator(mode="after")
    def _min_isr(self) -> KafkaSettings:
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError(f"min_insync_replicas ({self.min_insync_replicas}) cannot exceed replication_factor "
                             f"({self.replication_factor}): every acks=all write would be refused")
        return self


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"


class WorkerSettings(Section):
    app_id: str = "llm-router"
    datadir: Path = Path("var/worker")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    result_encoding: Literal["avro", "json"] = "avro"
    max_in_flight: int = Field(8, ge=1, description="requests dispatched at once per priority")
    intake_concurrency: int = Field(32, ge=1, description="requests validated and forwarded at once per priority")
    log_format: Literal["console", "json"] = "console"
    session_timeout_s: float = Field(10.0, ge=6, le=300, description="how soon a dead worker's partitions move")
    revoke_grace_s: float = Field(8.0, ge=0, description="how long provider calls under way may finish when "
                                                         "their partitions are revoked or the worker stops")
    producer_timeout_s: float = Field(10.0, gt=0, description="the most one Kafka write may take")
    producer_linger_ms: float = Field(2.0, ge=0, le=100, description="how long the producer holds a record to "
                                      "batch it with others: results of requests answered together share one "
                                      "produce request instead of one each")
    fetch_max_wait_ms: int = Field(20, ge=1, le=1500, description="how long the broker may hold a fetch that "
                                   "finds no new record: aiokafka sends one fetch at a time per broker, so a fetch "
                                   "held for idle partitions delays the busy ones by up to this (faust hard-codes "
                                   "1,500 ms)")
    write_attempts: int = Field(3, ge=1, description="tries of a failed Kafka write before the dead-letter path")
    reply_to_topics: list[str] = Field(["llm.results", "llm.replies.*"],
                                       description="topics (or shell patterns) a request's reply_to may name; "
                                                   "the topic prefix is put in front of each")

    @model_validator(mode="after")
    def _drain_fits_the_rebalance(self) -> WorkerSettings:
        if self.revoke_grace_s + self.producer_timeout_s > REBALANCE_TIMEOUT_S / 2:
            raise ValueError(
                f"revoke_grace_s + producer_timeout_s must be at most {REBALANCE_TIMEOUT_S / 2:g} s (half the "
                f"{REBALANCE_TIMEOUT_S:g} s rebalance timeout), not {self.revoke_grace_s + self.producer_timeout_s:g}")
        return self


class LimitsSettings(Section):
    max_prompt_chars: int = Field(32_000, ge=1)
    max_tokens: int = Field(4096, ge=1)
    default_timeout_s: float = Field(60.0, gt=0)
    max_message_bytes: int = Field(1_000_000, ge=1024, description="the largest request value (and headers) "
                                                                   "intake forwards; the forward must also fit "
                                                                   "kafka.max_record_bytes with its key and headers")
    # Every request field that is echoed into a result, a stored answer or a table key has a cap, checked at
    # intake before any provider is paid: an echo can never push an answer over the record limit.
    max_task_type_chars: int = Field(64, ge=1, description="task_type (echoed into route_reason)")
    max_providers: int = Field(16, ge=1, description="names in a request's providers allow-list")
    max_provider_name_chars: int = Field(63, ge=1, description="each name in providers (a provider name is "
                                                               "at most 63 characters)")
    max_user_id_chars: int = Field(256, ge=1, description="user_id (part of ledger and cache keys)")
    max_metadata_entries: int = Field(32, ge=0, description="entries in metadata")
    max_metadata_key_chars: int = Field(64, ge=1, description="each metadata key")
    max_metadata_value_chars: int = Field(1024, ge=1, description="each metadata value")
    max_metadata_chars: int = Field(8192, ge=1, description="all metadata keys and values together")

    def field_caps(self) -> FieldCaps:
        """The caps of the echoed fields as the plain values intake's check takes."""
        return FieldCaps(
            task_type_chars=self.max_task_type_chars, providers=self.max_providers,
            provider_name_chars=self.max_provider_name_chars, user_id_chars=self.max_user_id_chars,
            metadata_entries=self.max_metadata_entries, metadata_key_chars=self.max_metadata_key_chars,
            metadata_value_chars=self.max_metadata_value_chars, metadata_chars=self.max_metadata_chars)


class TablesSettings(Section):
    """The RocksDB-backed tables (``answered``)."""

    idempotency_window_s: float = Field(7 * 86400.0, gt=0, description="how long a request_id's stored result "
                                                                      "is re-emitted instead of answered again")
    rocksdb_block_cache_mb: int = Field(8, ge=1, description="block cache per table partition")
    rocksdb_write_buffer_mb: int = Field(4, ge=1, description="memtable size per table partition")
    rocksdb_max_open_files: int = Field(128, ge=16, description="open files per table partition")


class TracingSettings(Section):
    """OpenTelemetry traces (llmrouter/observability/tracing.py): spans and ids are made whatever the exporter."""

    exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="where finished spans go: nowhere, stdout (one JSON object a line), or an "
                            "OpenTelemetry collector over HTTP (the otlp extra)")
    otlp_endpoint: str | None = Field(None, description="the collector's traces URL; None: the exporter's "
                                      "own default (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else localhost:4318)")
    service_name: str = Field("llm-router", min_length=1, description="service.name of every span")


