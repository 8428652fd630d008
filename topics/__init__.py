"""Topic declarations: the external contract of DESIGN.md plus the internal
per-priority topics keyed by request_id (intake repartitions into them so the
idempotency table is written from a stream grouped by its key).

Declarations only: ``topic_specs`` says what must exist (``llmrouter`` creates
it, see :mod:`llmrouter.kafka_admin`), ``declare_topics`` binds them to an app.
Values travel as raw bytes; :mod:`llmrouter.codec` does the encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from llmrouter.contract import PRIORITIES
from llmrouter.settings import Settings

REQUESTS = "llm.requests.{priority}"
ACCEPTED = "llm.router.accepted.{priority}"
RESULTS = "llm.results"
STREAM = "llm.stream"
DLQ = "llm.dlq"
ALERTS = "llm.alerts"
EVENTS = "llm.events"
PROVIDERS = "llm.providers"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


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


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the router reads or writes, with its partition count."""
    kafka = settings.kafka
    specs = [TopicSpec(settings.topic(REQUESTS.format(priority=p)), kafka.request_partitions) for p in PRIORITIES]
    specs += [TopicSpec(settings.topic(ACCEPTED.format(priority=p)), kafka.partitions) for p in PRIORITIES]
    specs += [TopicSpec(settings.topic(name), kafka.partitions) for name in (RESULTS, STREAM, DLQ, ALERTS, EVENTS)]
    specs.append(TopicSpec(settings.topic(PROVIDERS), 1, compacted=True))
    return specs


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
    )
