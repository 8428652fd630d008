"""Topic declarations: the external contract of DESIGN.md plus the internal
per-priority topics keyed by request_id (intake repartitions into them so the
idempotency table is written from a stream grouped by its key).

Declarations only: ``topic_specs`` says what must exist, with how many
partitions and how long each topic keeps its records (``llmrouter`` creates
and checks them, see :mod:`llmrouter.runtime.kafka_admin`); ``group_source_topics``
names what the worker's consumer group reads; ``declare_topics`` binds them
to an app. Values travel as raw bytes; :mod:`llmrouter.wire.codec` does the encoding.

This folder is installed as ``llmrouter.topics`` (``package-dir`` in
pyproject.toml maps it into the llmrouter namespace): import it as
``llmrouter.topics``; there is no ``llmrouter/topics/`` folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from llmrouter.wire.contract import PRIORITIES
from llmrouter.config.settings import Settings

REQUESTS = "llm.requests.{priority}"
ACCEPTED = "llm.router.accepted.{priority}"
RESULTS = "llm.results"
STREAM = "llm.stream"
DLQ = "llm.dlq"
ALERTS = "llm.alerts"
EVENTS = "llm.events"
PROVIDERS = "llm.providers"
CACHE = "llm.router.cache"  # every cached answer, read whole by every worker into its L3 (llmrouter.cache.sync)
HEALTH = "llm.router.health"  # what each worker's calls showed, keyed by provider, to its owner (agents/provider_state)
FLAGS = "llm.router.flags"  # degradation flags and provider overrides, read whole by every worker (llmrouter.dispatch.flags)
OUTCOMES = "llm.router.outcomes"  # each worker's counts per subject, keyed by subject, to its owner (agents/windows)
# Faust names a table's changelog "<app id>-<table>-changelog" (no topic prefix)
# and creates it itself (configs from tables/); the router checks its partition
# count and its configs, and sets them with `topics create --apply-configs`.
ANSWERED_CHANGELOG = "{app_id}-answered-changelog"
STREAMED_CHANGELOG = "{app_id}-streamed-changelog"
# Created by the router before faust starts: every worker reads this one whole from the start (llmrouter.dispatch.fleet).
PROVIDER_STATE_CHANGELOG = "{app_id}-provider_state-changelog"
LEDGER_CHANGELOG = "{app_id}-ledger-changelog"
# Created by the router too, so /windows/?all=1 and /alerts/?all=1 can read them whole before faust writes them.
WINDOWS_CHANGELOG = "{app_id}-outcome_windows-changelog"
ALERT_STATE_CHANGELOG = "{app_id}-alert_state-changelog"

_MS_PER_HOUR = 3_600_000
HEALTH_RETENTION_HOURS = 1.0  # reports matter for a breaker's window (seconds); an hour is for debugging
OUTCOMES_RETENTION_HOURS = 1.0  # counts matter until their owner has added them (seconds); an hour outlives a takeover


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the settings want it.

    ``partitions_setting`` names the setting its partition count comes from
    (empty: fixed). An existing topic must have exactly that count when
    ``exact_partitions`` (tables and their sources are partitioned alike);
    the outputs work with any count, their readers take every partition.
    ``retention_ms`` is None for a compacted topic whose records are never
    deleted by time (llm.providers); a compacted topic with a retention is
    also deleted by time (the answered changelog). A topic that is not
    ``managed`` is created by faust; the router checks it and can set its
    configs, but never creates it.
    """

    name: str
    partitions: int
    partitions_setting: str = ""
    exact_partitions: bool = True
    retention_ms: int | None = None
    compacted: bool = False
    managed: bool = True


@dataclass(frozen=True)
class Topics:
    requests: dict[str, faust.TopicT]  # by priority
    accepted: dict[str, faust.TopicT]  # by priority, keyed by request_id
    results: faust.TopicT
    stream: faust.TopicT
    dlq: faust.TopicT
    alerts: faust.TopicT
    events: faust.TopicT
    providers: faust.TopicT
    cache: faust.TopicT
    health: faust.TopicT
    outcomes: faust.TopicT


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the router reads or writes, with its partition count and retention."""
    kafka, keep = settings.kafka, settings.kafka.retention

    def source(name: str, partitions: int, setting: str) -> TopicSpec:
        return TopicSpec(settings.topic(name), partitions, setting, retention_ms=_ms(keep.requests_hours))

    def output(name: str, hours: float) -> TopicSpec:
        return TopicSpec(settings.topic(name), kafka.partitions, "kafka.partitions", exact_partitions=False,
                         retention_ms=_ms(hours))

    specs = [source(REQUESTS.format(priority=p), kafka.request_partitions, "kafka.request_partitions")
             for p in PRIORITIES]
    specs += [source(ACCEPTED.format(priority=p), kafka.partitions, "kafka.partitions") for p in PRIORITIES]
    specs += [output(RESULTS, keep.results_hours), output(STREAM, keep.stream_hours), output(DLQ, keep.dlq_hours),
              output(ALERTS, keep.alerts_hours), output(EVENTS, keep.events_hours)]
    specs.append(TopicSpec(settings.topic(PROVIDERS), 1, compacted=True))
    specs.append(TopicSpec(settings.topic(FLAGS), 1, compacted=True))  # a flag holds until cleared, never by time
    specs.append(TopicSpec(settings.topic(CACHE), kafka.partitions, "kafka.partitions", exact_partitions=False,
                           compacted=True, retention_ms=max(1, settings.cache_config.ttl_default) * 1000))
    specs.append(TopicSpec(settings.topic(HEALTH), kafka.partitions, "kafka.partitions",
                           retention_ms=_ms(HEALTH_RETENTION_HOURS)))
    for changelog in (ANSWERED_CHANGELOG, STREAMED_CHANGELOG):  # created by faust, kept as long as each other
        specs.append(TopicSpec(changelog.format(app_id=settings.worker.app_id), kafka.partitions,
                               "kafka.partitions", compacted=True, managed=False,
                               retention_ms=round(settings.tables.idempotency_window_s * 1000)))
    for changelog in (PROVIDER_STATE_CHANGELOG, LEDGER_CHANGELOG, ALERT_STATE_CHANGELOG):
        specs.append(TopicSpec(changelog.format(app_id=settings.worker.app_id), kafka.partitions,
                               "kafka.partitions", compacted=True))
    specs.append(TopicSpec(settings.topic(OUTCOMES), kafka.partitions, "kafka.partitions",
                           retention_ms=_ms(OUTCOMES_RETENTION_HOURS)))
    specs.append(TopicSpec(WINDOWS_CHANGELOG.format(app_id=settings.worker.app_id), kafka.partitions,
                           "kafka.partitions", compacted=True, retention_ms=windows_retention_ms(settings)))
    return specs


def windows_retention_ms(settings: Settings) -> int:
    """How long a window's row stays in its changelog: its retention and one window more (it is written
    until it closes)."""
    return round((settings.windows.retention_s + settings.windows.size_s) * 1000)


def _ms(hours: float) -> int:
    return round(hours * _MS_PER_HOUR)


def group_source_topics(settings: Settings) -> list[TopicSpec]:
    """The topics the worker's consumer group reads (llm.providers and llm.router.flags are read without a group)."""
    names = {settings.topic(t.format(priority=p)) for t in (REQUESTS, ACCEPTED) for p in PRIORITIES}
    names.add(settings.topic(HEALTH))
    names.add(settings.topic(OUTCOMES))
    return [spec for spec in topic_specs(settings) if spec.name in names]


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def raw(name: str, partitions: int) -> faust.TopicT:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=partitions)

    kafka = settings.kafka
    return Topics(
        requests={p: raw(REQUESTS.format(priority=p), kafka.request_partitions) for p in PRIORITIES},
        accepted={p: raw(ACCEPTED.format(priority=p), kafka.partitions) for p in PRIORITIES},
        results=raw(RESULTS, kafka.partitions),
        stream=raw(STREAM, kafka.partitions),
        dlq=raw(DLQ, kafka.partitions),
        alerts=raw(ALERTS, kafka.partitions),
        events=raw(EVENTS, kafka.partitions),
        providers=raw(PROVIDERS, 1),
        cache=raw(CACHE, kafka.partitions),
        health=raw(HEALTH, kafka.partitions),
        outcomes=raw(OUTCOMES, kafka.partitions),
    )
