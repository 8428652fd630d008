"""Every Prometheus metric of the router, defined in one place (spec §7.1).

Each app gets its own registry, so two workers in one process (tests) do not
collide; ``/metrics`` on the Faust web server renders it. Gauges that read the
state of the worker (breakers, buckets, consumer lag, provider calls in flight)
are set just before each rendering by the hooks given to :meth:`Metrics.on_render`
(:mod:`llmrouter.observability.gauges`), so a scrape sees them as they are now.

Labels are bounded sets: priority, status, path (``l1``/``l2``/``l3`` for a
cache hit, ``local``, ``cloud`` or ``none``), provider names, error codes;
never a request or user id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.request_duration_seconds = Histogram(
            "llmrouter_request_duration_seconds", "From request creation to its result, by the path that answered.",
            ["priority", "path"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.request_total = Counter(
            "llmrouter_request_total", "Results produced, by status, path and the provider whose answer it is "
            "(for a cache hit: the one that gave it first; none for a refusal or an error).",
            ["priority", "status", "path", "provider"], registry=r)
        self.active_connections = Gauge(
            "llmrouter_active_connections", "Provider calls in flight: a cloud provider's slots in use, the local "
            "model's requests running or queued in its batcher.", ["provider"], registry=r)
        self.cache_hits_total = Counter(
            "llmrouter_cache_hits_total", "Answers served from a cache level.", ["level"], registry=r)
        self.cache_misses_total = Counter(
            "llmrouter_cache_misses_total", "Cache lookups no level could answer.", registry=r)
        self.llm_tokens_used = Counter(
            "llmrouter_llm_tokens_used", "Tokens used, by provider and kind.", ["provider", "kind"], registry=r)
        self.provider_calls_total = Counter(
            "llmrouter_provider_calls_total", "Provider attempts, by outcome.", ["provider", "outcome"], registry=r)
        self.provider_call_duration_seconds = Histogram(
            "llmrouter_provider_call_duration_seconds", "One provider attempt, by outcome (retries count apart).",
            ["provider", "outcome"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.provider_errors_total = Counter(
            "llmrouter_provider_errors_total", "Provider failures, by error code.", ["provider", "code"], registry=r)
        self.provider_cost_usd_total = Counter(
            "llmrouter_provider_cost_usd_total", "US dollars spent, by provider.", ["provider"], registry=r)
        self.provider_healthy = Gauge(
            "llmrouter_provider_healthy", "1 if the provider's last health check passed.", ["provider"], registry=r)
        self.dlq_total = Counter(
            "llmrouter_dlq_total", "Messages written to the dead-letter topic.", ["code"], registry=r)
        self.avro_legacy_headers_total = Counter(
            "llmrouter_avro_legacy_headers_total", "Values read with the byte-reversed Avro header of 0.1.0.",
            ["schema"], registry=r)
        self.partitions_reseeked_total = Counter(
            "llmrouter_partitions_reseeked_total",
            "Partitions found stalled (messages faust dropped before an agent got them) and sought back.",
            registry=r)
        self.replays_total = Counter(
            "llmrouter_replays_total", "Stored results re-emitted for a request delivered again.", registry=r)
        self.backpressure_paused = Gauge(
            "llmrouter_backpressure_paused", "1 while the priority's answer topic is paused for more urgent requests "
            "(critical never is).", ["priority"], registry=r)
        self.backpressure_waiting = Gauge(
            "llmrouter_backpressure_waiting", "Requests waiting for a provider slot, by priority (last sample).",
            ["priority"], registry=r)
        self.quota_exceeded_total = Counter(
            "llmrouter_quota_exceeded_total", "Requests rejected because their user was over its quota.",
            ["priority"], registry=r)
        self.breaker_state = Gauge(
            "llmrouter_breaker_state", "Circuit breaker per provider: 0 closed, 1 half-open, 2 open; scope here "
            "(this worker's) or group (as the provider's owner last wrote it).", ["provider", "scope"], registry=r)
        self.rate_limit_tokens = Gauge(
            "llmrouter_rate_limit_tokens", "Tokens in this worker's bucket of the provider's rate limit.",
            ["provider"], registry=r)
        self.rate_limit_rate_per_s = Gauge(
            "llmrouter_rate_limit_rate_per_s", "This worker's refill rate of the provider's bucket now (AIMD).",
            ["provider"], registry=r)
        self.consumer_lag = Gauge(
            "llmrouter_consumer_lag", "Messages behind the end of the partitions this worker owns, by priority "
            "(stage requests: intake's topics; accepted: the answer stage's).", ["stage", "priority"], registry=r)
        self.memory_usage_bytes = Gauge(
            "llmrouter_memory_usage_bytes", "Resident memory of the worker process.", registry=r)
        self.cpu_usage_percent = Gauge(
            "llmrouter_cpu_usage_percent", "CPU use of the worker process (100 = one core).", registry=r)
        self._process = psutil.Process(os.getpid())
        self._render_hooks: list[Callable[[], None]] = []

    def finished(self, priority: str, record: dict[str, Any]) -> None:
        """Count a result sent: by status, path and provider, and its end-to-end latency when it has one."""
        path = path_of(record)
        self.request_total.labels(priority, record["status"], path, record.get("provider") or "none").inc()
        if "total_latency_ms" in record:
            self.request_duration_seconds.labels(priority, path).observe(record["total_latency_ms"] / 1000.0)

    def on_render(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` before every rendering (it sets gauges that read the worker's state)."""
        self._render_hooks.append(hook)

    def sample_process(self) -> None:
        """Refresh the process gauges (called from a timer)."""
        self.memory_usage_bytes.set(self._process.memory_info().rss)
        self.cpu_usage_percent.set(self._process.cpu_percent(interval=None))

    def render(self) -> bytes:
        for hook in self._render_hooks:
            hook()
        return generate_latest(self.registry)


def path_of(record: dict[str, Any]) -> str:
    """The path a result took: its cache level for a cache hit, else its route (local, cloud or none)."""
    route = record.get("route") or "none"
    return (record.get("cache_level") or "none") if route == "cache" else route
