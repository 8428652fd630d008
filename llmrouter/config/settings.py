"""Settings: one YAML file whose sections mirror the specification.

Loaded once (:func:`load_settings`) and passed to whatever needs them; nothing
reads settings from module globals. Order of precedence, lowest first:

1. ``default_settings.yaml`` shipped with the package;
2. the file named by ``--settings`` or ``$LLMROUTER_SETTINGS``, merged over it;
3. environment overrides ``LLMROUTER__SECTION__KEY=value`` (double underscores
   separate levels; values are parsed as YAML scalars);
Secrets are not settings: API keys come only from the environment or a file
outside the repository (:mod:`llmrouter.config.secrets`). A provider section names the
variable that holds its key (``api_key_env``; by default ``HF_TOKEN``,
``TOGETHER_API_KEY``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``).

The providers (F001, F051) are the F011-F014 sections plus any under
``providers:`` (e.g. an OpenAI-compatible server of your own); each becomes a
:class:`ProviderSpec`. ``premium`` in the fallback chain stands for the two
premium providers, ``openai`` then ``anthropic``.

Validation happens at start; an invalid file is refused with every problem
listed, each with its dotted path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmrouter.alerting.config import AlertsSettings, WindowsSettings
from llmrouter.cache.normalise import Templates
from llmrouter.core.backpressure import PAUSABLE, BackpressureConfig
from llmrouter.core.breaker import BreakerConfig
from llmrouter.errors import ConfigError
from llmrouter.localmodel.config import parse_size
from llmrouter.providers.spec import PREMIUM_KINDS, ProviderSpec, spec_from_record

BUILTIN_PROVIDERS = ("local", "huggingface", "together", "openai", "anthropic")
PREMIUM = "premium"  # in fallback_chain: the premium providers, in this order
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(second|minute|hour|day)\s*$")
_MONEY = re.compile(r"^\s*\$(\d+(?:\.\d+)?)\s*/\s*(day|month)\s*$")
_PERIOD_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(text: str) -> tuple[float, float]:
    """``"50/hour"`` -> (50 requests, 3600 seconds)."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate; write it like '50/hour' or '1000/minute'")
    return float(match.group(1)), float(_PERIOD_S[match.group(2)])


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicRetention(_Section):
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


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    request_partitions: int = Field(4, ge=1, description="partitions of each llm.requests.<priority> topic")
    partitions: int = Field(4, ge=1, description="partitions of results, stream, dlq, events, alerts and internal topics")
    replication_factor: int = Field(1, ge=1)
    min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of the router's topics; None: 1 for replication factor 1, "
                                "else replication_factor - 1 capped at 2")
    retention: TopicRetention = TopicRetention()
    new_group_lookback_s: float = Field(
        600, ge=0, description="a consumer group with no committed offset starts at the requests produced this "
                               "recently, not at the start of the retained week")

    @model_validator(mode="after")
    def _min_isr(self) -> KafkaSettings:
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError(f"min_insync_replicas ({self.min_insync_replicas}) cannot exceed replication_factor "
                             f"({self.replication_factor}): every acks=all write would be refused")
        return self


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"


REBALANCE_TIMEOUT_S = 60.0  # how long the group waits for a member to rejoin a rebalance


class WorkerSettings(_Section):
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


class LimitsSettings(_Section):
    max_prompt_chars: int = Field(32_000, ge=1)
    max_tokens: int = Field(4096, ge=1)
    default_timeout_s: float = Field(60.0, gt=0)
    max_message_bytes: int = Field(1_000_000, ge=1024, description="the largest request value (and headers) "
                                                                   "intake forwards; keep it under the topics' "
                                                                   "max.message.bytes")


class TablesSettings(_Section):
    """The RocksDB-backed tables (``answered``)."""

    idempotency_window_s: float = Field(7 * 86400.0, gt=0, description="how long a request_id's stored result "
                                                                      "is re-emitted instead of answered again")
    rocksdb_block_cache_mb: int = Field(8, ge=1, description="block cache per table partition")
    rocksdb_write_buffer_mb: int = Field(4, ge=1, description="memtable size per table partition")
    rocksdb_max_open_files: int = Field(128, ge=16, description="open files per table partition")


class LocalConfig(_Section):
    """Specification F011."""

    enabled: bool = True
    model_path: Path = Path("./models/tinyllama-1.1b-onnx")
    max_memory: str = "1.5GB"
    inference_threads: int = Field(4, ge=1)
    quantization: Literal["int8", "none"] = "int8"
    batch_size: int = Field(1, ge=1, le=64, description="most requests decoded together in one batch (F040)")
    batching: Literal["latency", "balanced", "throughput"] = Field(
        "balanced", description="latency: never wait for a batch to fill; balanced: wait briefly when requests "
                                "arrive fast enough; throughput: wait up to max_batch_wait_ms for a full batch")
    max_batch_wait_ms: float | None = Field(None, ge=0, description="None = the mode's default (0, 50, 200 ms)")
    max_queue: int = Field(32, ge=0, description="requests waiting for a busy model at most; more go on to the "
                                                 "next provider (code overloaded)")

    @field_validator("max_memory")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value


class _CloudConfig(_Section):
    api_key_env: str | None = Field(None, description="variable holding the key; None = the kind's usual one")
    endpoint: str | None = None
    rate_limit: str = "60/minute"
    models: list[str] = []
    timeout: float = Field(30, gt=0)
    retry_attempts: int = Field(3, ge=0)
    context_tokens: int = Field(0, ge=0, description="0 = the kind's usual context window")
    price_input_per_1k_usd: float = Field(0.0, ge=0)
    price_output_per_1k_usd: float = Field(0.0, ge=0)

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value


class HuggingFaceConfig(_CloudConfig):
    """Specification F012."""


class TogetherConfig(_CloudConfig):
    """Specification F013. ``cost_per_token`` prices input and output alike unless
    the per-1k prices are set."""

    priority: Literal["low", "normal", "high"] = "normal"
    cost_per_token: float = Field(0.0, ge=0)


class PremiumVendorConfig(_CloudConfig):
    """One premium API (OpenAI or Anthropic) under F014."""


class PremiumConfig(_Section):
    """Specification F014: OpenAI and Anthropic, used only when the rest of the chain cannot answer."""

    usage_limit: str = "$10/month"
    emergency_only: bool = True
    openai: PremiumVendorConfig = PremiumVendorConfig()
    anthropic: PremiumVendorConfig = PremiumVendorConfig()

    @field_validator("usage_limit")
    @classmethod
    def _money(cls, value: str) -> str:
        if not _MONEY.match(value):
            raise ValueError(f"{value!r} is not a usage limit; write it like '$10/month'")
        return value


class ProviderLimits(_Section):
    """One row of the specification's LLM_CONFIG table (§5.2)."""

    max_concurrent: int = Field(ge=1)
    timeout: float = Field(gt=0, description="seconds")
    rate_limit: str | None = None
    memory_limit: str | None = None


class CacheConfig(_Section):
    """The specification's CACHE_CONFIG (§5.2)."""

    ttl_default: int = Field(3600, ge=0, description="seconds")
    max_size: str = "256MB"
    eviction_policy: Literal["LRU"] = "LRU"
    compression: bool = True

    @field_validator("max_size")
    @classmethod
    def _size(cls, value: str) -> str:
        parse_size(value)
        return value


class CacheTemplate(_Section):
    """A volatile part of prompts, replaced by ``<name>`` before the cache key is hashed."""

    name: str
    pattern: str = Field(description="a Python regular expression, matched against normalised text")


class CacheSettings(_Section):
    """How the answer cache behaves (F031-F035); TTL, size and compression are in ``cache_config``."""

    enabled: bool = True
    namespace_version: int = Field(1, ge=1, description="in every key; raise it to orphan every cached answer")
    shared_namespace: bool = Field(False, description="one cache for all tenants instead of one per user/tenant")
    cache_nondeterministic: bool = Field(False, description="cache sampled requests too (temperature > 0, no seed)")
    templates: list[CacheTemplate] = Field([], description="volatile parts stripped before hashing; none by default")
    l1_enabled: bool = True
    l2_enabled: bool = True
    l3_enabled: bool = True
    redis_timeout_s: float = Field(0.1, gt=0, le=10, description="connect and reply timeout of the Redis level")
    redis_retry_s: float = Field(1.0, gt=0, description="seconds between pings while Redis is down")
    l2_batch_max: int = Field(256, ge=1, description="most keys in one MGET, most writes in one pipeline")
    write_queue_max: int = Field(10_000, ge=1, description="Redis writes queued before the oldest is dropped")
    recent_answers: int = Field(10_000, ge=0, description="results answered from the cache kept by request_id, "
                                "so a copy of such a request delivered again is re-emitted as a replay")
    hot_keys: int = Field(1000, ge=1, description="popular keys tracked (decaying counts) for warming")
    hot_half_life_s: float = Field(600.0, gt=0, description="how fast a key's popularity fades")
    warm_top_k: int = Field(100, ge=0, description="the most popular keys warmed into L1 each pass (0: off)")
    warm_interval_s: float = Field(30.0, gt=0, description="seconds between warming passes (and at start)")
    refresh_ahead_s: float = Field(300.0, ge=0, description="a popular entry expiring within this is asked "
                                   "again, at low priority, before anyone misses it (0: never)")
    semantic_enabled: bool = Field(False, description="after an exact miss, serve the answer of an earlier request "
                                   "worded differently (needs the `semantic` extra); see llmrouter/cache/semantic.py")
    semantic_threshold: float = Field(0.75, gt=0, le=1, description="least cosine similarity of a semantic hit "
                                      "(a candidate must also pass the guard); measured by bench/semantic_cache.py")
    semantic_max_entries: int = Field(10_000, ge=1, description="prompts the semantic index remembers per worker, "
                                      "least recently used first out")

    @field_validator("templates")
    @classmethod
    def _templates_compile(cls, value: list[CacheTemplate]) -> list[CacheTemplate]:
        Templates((template.name, template.pattern) for template in value)
        return value

    def compiled_templates(self) -> Templates:
        """The templates, compiled (call once at start and keep the result)."""
        return Templates((template.name, template.pattern) for template in self.templates)


class RegistrySettings(_Section):
    """The provider registry (F001, F051, F052)."""

    health_check_interval_s: float = Field(30.0, gt=0, description="seconds between health checks per provider")
    catch_up_timeout_s: float = Field(10.0, gt=0, description="how long a starting worker reads llm.providers")
    stats_window: int = Field(100, ge=1, description="recent calls behind the latency and error-rate figures")
    report_interval_s: float = Field(0.1, gt=0, le=10, description="how often each worker tells the providers' "
                                     "owners what its calls showed (llmrouter/dispatch/fleet.py)")


class RoutingSettings(_Section):
    """Choosing among providers (F002, F020, F037, F055); see llmrouter/core/routing.py."""

    equivalent: list[list[str]] = Field([], description="groups of providers that may stand in for each other, "
                                        "e.g. [[huggingface, together]]: within a group the strategy picks the order")
    strategy: Literal["round_robin", "latency", "capacity"] = Field(
        "latency", description="round_robin: take turns; latency: the fastest recently first; capacity: the most "
                               "free concurrency first")
    hedge_after_ms: float | None = Field(None, gt=0, description="ask the next provider too when the first has not "
                                         "answered by then (first good answer wins; both are paid); None: off")
    hedge_priorities: list[Literal["critical", "high", "normal", "low"]] = Field(
        ["critical"], description="the priorities that are hedged (streamed requests never are)")


class RateLimitSettings(_Section):
    """Token buckets per provider (F006): the limits are the providers' ``rate_limit`` settings, shared by the
    workers in proportion to the partitions each owns (llmrouter/dispatch/limits.py)."""

    enabled: bool = Field(True, description="false: no rate limit is enforced (429s are still honoured)")
    decrease: float = Field(0.5, gt=0, lt=1, description="a 429 multiplies this worker's rate by this")
    floor_share: float = Field(0.1, gt=0, le=1, description="the rate never shrinks below this share of the limit")
    recover_s: float = Field(60.0, gt=0, description="from the floor back to the limit, linearly, in this long")


class BreakerSettings(_Section):
    """A circuit breaker per provider (F003); see llmrouter/core/breaker.py for the states."""

    window_s: float = Field(30.0, gt=0, description="outcomes older than this do not count")
    min_calls: int = Field(10, ge=1, description="fewer calls in the window never open it on the failure rate")
    failure_rate: float = Field(0.5, gt=0, le=1, description="open at this share of failures in the window")
    consecutive_failures: int = Field(5, ge=0, description="open at once after this many failures in a row (0: off)")
    cooldown_s: float = Field(5.0, gt=0, description="open this long before the first probes")
    max_cooldown_s: float = Field(60.0, gt=0, description="each failed probe doubles the cool-down, up to this")
    half_open_probes: int = Field(3, ge=1, description="calls let through while half-open")
    ramp_s: float = Field(20.0, ge=0, description="after closing, the admitted share grows to all over this long")

    @model_validator(mode="after")
    def _consistent(self) -> BreakerSettings:
        self.to_config()  # cooldown_s <= max_cooldown_s and the like, refused in the breaker's own words
        return self

    def to_config(self) -> BreakerConfig:
        return BreakerConfig(**self.model_dump())


class BackpressureSettings(_Section):
    """Backpressure by priority (F004): lower priorities paused while more urgent requests wait for a provider
    slot (llmrouter/core/backpressure.py)."""

    enabled: bool = Field(True, description="false: no priority is ever paused")
    pause_waiting: int = Field(1, ge=1, description="more urgent requests waiting for a provider slot at which "
                                                    "a priority is in their way")
    resume_waiting: int = Field(0, ge=0, description="at most this many waiting and it is out of their way")
    pause_after_s: float = Field(1.0, ge=0, description="the pressure held this long before a priority is paused")
    resume_after_s: float = Field(2.0, gt=0, description="calm this long before a paused priority resumes")
    max_resume_after_s: float = Field(30.0, gt=0, description="a priority paused again soon after it resumed "
                                      "waits twice as long the next time, up to this")
    sample_interval_s: float = Field(0.1, gt=0, le=5, description="how often the load is sampled")
    deepest: Literal[PAUSABLE] = Field("high", description="the most urgent priority that may be paused "
                                                           "(critical never is)")

    @model_validator(mode="after")
    def _consistent(self) -> BackpressureSettings:
        self.to_config()  # resume_waiting < pause_waiting and the like, refused in the decision's own words
        return self

    def to_config(self) -> BackpressureConfig:
        return BackpressureConfig(**self.model_dump(exclude={"enabled", "sample_interval_s"}))


class QuotaSettings(_Section):
    """Requests per user (F007), checked by the answer stage before any provider (llmrouter/core/quota.py)."""

    per_user: str | None = Field(None, description="e.g. '100/minute': each user's quota; None: none")
    overrides: dict[str, str | None] = Field({}, description="user_id -> its own quota (None: not limited)")
    critical_bypass: bool = Field(True, description="critical requests are neither refused nor counted")

    @field_validator("per_user")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("overrides")
    @classmethod
    def _rates(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for user, limit in value.items():
            if limit is not None:
                try:
                    parse_rate(limit)
                except ValueError as exc:
                    raise ValueError(f"user {user!r}: {exc}") from None
        return value


class TracingSettings(_Section):
    """OpenTelemetry traces (llmrouter/observability/tracing.py): spans and ids are made whatever the exporter."""

    exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="where finished spans go: nowhere, stdout (one JSON object a line), or an "
                            "OpenTelemetry collector over HTTP (the otlp extra)")
    otlp_endpoint: str | None = Field(None, description="the collector's traces URL; None: the exporter's "
                                      "own default (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else localhost:4318)")
    service_name: str = Field("llm-router", min_length=1, description="service.name of every span")


class Settings(_Section):
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    worker: WorkerSettings = WorkerSettings()
    limits: LimitsSettings = LimitsSettings()
    local_config: LocalConfig = LocalConfig()
    huggingface_config: HuggingFaceConfig = HuggingFaceConfig()
    together_config: TogetherConfig = TogetherConfig()
    premium_config: PremiumConfig = PremiumConfig()
    providers: dict[str, dict[str, Any]] = Field({}, description="more providers by name (ProviderConfig fields)")
    fallback_chain: list[str] = ["local", "huggingface", "together", PREMIUM]
    llm_config: dict[str, ProviderLimits] = {}
    cache_config: CacheConfig = CacheConfig()
    cache: CacheSettings = CacheSettings()
    registry: RegistrySettings = RegistrySettings()
    tables: TablesSettings = TablesSettings()
    breaker: BreakerSettings = BreakerSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    routing: RoutingSettings = RoutingSettings()
    backpressure: BackpressureSettings = BackpressureSettings()
    quotas: QuotaSettings = QuotaSettings()
    tracing: TracingSettings = TracingSettings()
    windows: WindowsSettings = WindowsSettings()  # F025: per-minute aggregates (llmrouter/alerting/config.py)
    alerts: AlertsSettings = AlertsSettings()  # F025, spec §7.2: the rules over them

    @model_validator(mode="after")
    def _chain(self) -> Settings:
        clash = sorted(set(self.providers) & set(BUILTIN_PROVIDERS + (PREMIUM,)))
        if clash:
            raise ValueError(f"providers: {clash} are built in; configure them in their own sections")
        for name, fields in self.providers.items():
            try:
                spec_from_record({**fields, "name": name}, source="settings")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        known = list(BUILTIN_PROVIDERS) + list(self.providers) + [PREMIUM]
        unknown = [name for name in self.fallback_chain if name not in known]
        if unknown:
            raise ValueError(f"fallback_chain names unknown providers {unknown}; known: {known}")
        strangers = sorted({name for group in self.routing.equivalent for name in group} - set(known) - {PREMIUM})
        if strangers:
            raise ValueError(f"routing.equivalent names unknown providers {strangers}; known: {known}")
        chain = self.chain()
        if len(set(chain)) != len(chain):
            raise ValueError(f"fallback_chain lists a provider twice: {self.fallback_chain}")
        return self

    def chain(self) -> list[str]:
        """The fallback chain with ``premium`` spelt out as its providers."""
        out: list[str] = []
        for name in self.fallback_chain:
            out += list(PREMIUM_KINDS) if name == PREMIUM else [name]
        return out

    def provider_specs(self) -> dict[str, ProviderSpec]:
        """Every provider the settings file defines, by name."""
        specs = {"local": self._local_spec(),
                 "huggingface": self._cloud_spec("huggingface", self.huggingface_config),
                 "together": self._cloud_spec("together", self.together_config)}
        for kind in PREMIUM_KINDS:
            specs[kind] = self._cloud_spec(kind, getattr(self.premium_config, kind),
                                           emergency_only=self.premium_config.emergency_only)
        for name, fields in self.providers.items():
            specs[name] = spec_from_record({**fields, "name": name}, source="settings")
        return specs

    def _local_spec(self) -> ProviderSpec:
        limits = self.limits_for("local")
        return ProviderSpec(name="local", kind="local", models=(self.local_config.model_path.name,),
                            timeout_s=limits.timeout, max_concurrent=limits.max_concurrent, retry_attempts=0,
                            enabled=self.local_config.enabled)

    def _cloud_spec(self, name: str, config: _CloudConfig, *, emergency_only: bool = False) -> ProviderSpec:
        row = self.llm_config.get(name) or (self.llm_config.get(PREMIUM) if name in PREMIUM_KINDS else None)
        price_in, price_out = config.price_input_per_1k_usd, config.price_output_per_1k_usd
        if isinstance(config, TogetherConfig) and not (price_in or price_out):
            price_in = price_out = config.cost_per_token * 1000.0
        return ProviderSpec(
            name=name, kind=name, endpoint=config.endpoint, api_key_env=config.api_key_env,
            models=tuple(config.models), rate_limit=(row.rate_limit if row and row.rate_limit else config.rate_limit),
            timeout_s=row.timeout if row else config.timeout, max_concurrent=row.max_concurrent if row else 4,
            retry_attempts=config.retry_attempts, context_tokens=config.context_tokens,
            price_input_per_1k_usd=price_in, price_output_per_1k_usd=price_out, emergency_only=emergency_only)

    def limits_for(self, provider: str) -> ProviderLimits:
        """The §5.2 row for ``provider``, or a conservative default."""
        row = self.llm_config.get(provider)
        if row is None and provider in PREMIUM_KINDS:
            row = self.llm_config.get(PREMIUM)
        return row or ProviderLimits(max_concurrent=4, timeout=30)

    def cache_l1_bytes(self) -> int:
        """The in-process cache's bound in bytes (``cache_config.max_size``)."""
        return parse_size(self.cache_config.max_size)

    def topic(self, name: str) -> str:
        """A contract topic name with the configured prefix."""
        return f"{self.kafka.topic_prefix}{name}"

    def reply_to_patterns(self) -> tuple[str, ...]:
        """The topics a request's reply_to may name, with the topic prefix."""
        return tuple(self.topic(pattern) for pattern in self.worker.reply_to_topics)

    def inert(self) -> list[str]:
        """Settings that are read and validated but not acted on yet (a later stage makes them real)."""
        names = ["together_config.priority"]
        for provider, row in sorted(self.llm_config.items()):
            names += [f"llm_config.{provider}.memory_limit"] if row.memory_limit else []
        return names


def load_settings(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the settings; raise :class:`ConfigError` listing every problem."""
    env = os.environ if env is None else env
    data = yaml.safe_load(resources.files("llmrouter.config").joinpath("default_settings.yaml").read_text()) or {}
    path = path or env.get("LLMROUTER_SETTINGS")
    if path:
        try:
            override = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"settings file {path} is not valid YAML: {exc}") from exc
        if not isinstance(override, dict):
            raise ConfigError(f"settings file {path} must hold a mapping of sections, not {type(override).__name__}")
        data = _merge(data, override)
    data = _merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings ({exc.error_count()} problem(s)): {problems}") from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith("LLMROUTER__"):
            continue
        path = [part.lower() for part in name[len("LLMROUTER__"):].split("__") if part]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw else raw
    return out
