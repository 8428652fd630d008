"""Create and check the router's topics (faust creates only its internal ones).

The worker, at start, and ``llmrouter topics create`` call :func:`ensure_topics`:
it reads every topic of :func:`~llmrouter.topics.topic_specs` that exists,
stops with a :class:`~llmrouter.errors.ConfigError` listing every problem
(:mod:`llmrouter.runtime.topic_plan` decides what is one) before changing anything,
creates the missing topics with their retention, cleanup policy and min ISR,
and reports configs that drifted from the settings; with ``apply_configs`` it
sets them instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from llmrouter.errors import ConfigError, RouterError
from llmrouter.config.settings import Settings
from llmrouter.runtime.topic_plan import (CHECKED_CONFIGS, Drift, ExistingTopic, altered_configs, check_topics,
                                  config_changes, min_insync_replicas, problems_message, topic_configs)
from llmrouter.topics import TopicSpec, topic_specs

TOPIC_ALREADY_EXISTS = 36
# Kafka error codes that mean the request itself does not fit this cluster
# (partitions, replication factor, a config value, a creation policy).
_CONFIG_ERROR_CODES = {37, 38, 39, 40, 44}
_DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs config_source: set on the topic itself


@dataclass(frozen=True)
class TopicReport:
    """What :func:`ensure_topics` did: topics created, configs set by ``apply_configs``
    (topic -> the configs that changed), drift left as it is."""

    created: list[str]
    altered: dict[str, dict[str, str]]
    drift: list[Drift]


async def ensure_topics(settings: Settings, *, apply_configs: bool = False) -> TopicReport:
    """Check the existing topics, create the missing ones; with ``apply_configs`` also set the
    retention, cleanup policy and min ISR the settings want on those that exist."""
    specs = topic_specs(settings)
    kafka = settings.kafka
    min_isr = min_insync_replicas(kafka.replication_factor, kafka.min_insync_replicas)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = await describe_existing(admin, [spec.name for spec in specs])
        check = check_topics(specs, existing, min_isr)
        if [problem for problem in check.problems if not (apply_configs and problem.by_apply)]:
            raise ConfigError(problems_message(check.problems))
        created = await _create(admin, check.missing, kafka.replication_factor, min_isr)
        if not apply_configs:
            return TopicReport(created=created, altered={}, drift=check.drift)
        altered = await _apply(admin, specs, existing, min_isr)
        return TopicReport(created=created, altered=altered, drift=[])
    finally:
        await admin.close()


async def describe_existing(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, ExistingTopic]:
    """Partition counts and configs of those of ``names`` that exist."""
    # Only topics known to exist are described: a metadata request that names a
    # missing topic creates it on a broker with auto.create.topics.enable=true.
    present = sorted(set(names) & set(await admin.list_topics()))
    if not present:
        return {}
    partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(present)
                  if t["error_code"] == 0}
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in present])
    topics: dict[str, ExistingTopic] = {}
    for response in responses:
        for error_code, error_message, _type, name, entries in response.resources:
            if error_code:
                raise RouterError(f"cannot read the configs of topic {name}: {error_message} (error {error_code})")
            if name not in partitions:
                continue  # deleted in between
            topics[name] = ExistingTopic(
                name, partitions[name],
                configs={e[0]: e[1] for e in entries if e[0] in CHECKED_CONFIGS},
                overrides={e[0]: e[1] for e in entries if e[3] == _DYNAMIC_TOPIC_CONFIG})
    return topics


async def _create(admin: AIOKafkaAdminClient, missing: list[TopicSpec], replication_factor: int,
                  min_isr: int) -> list[str]:
    if not missing:
        return []
    response = await admin.create_topics([
        NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=topic_configs(spec, min_isr))
        for spec in missing])
    for name, error_code, error_message in response.topic_errors:
        if error_code == TOPIC_ALREADY_EXISTS:
            continue  # another worker created it at the same moment
        if error_code:
            error = ConfigError if error_code in _CONFIG_ERROR_CODES else RouterError
            raise error(f"cannot create topic {name}: {error_message} (Kafka error {error_code})")
    return [spec.name for spec in missing]


async def _apply(admin: AIOKafkaAdminClient, specs: list[TopicSpec], existing: dict[str, ExistingTopic],
                 min_isr: int) -> dict[str, dict[str, str]]:
    """Set the configs of every existing topic that differ from the settings (faust's changelog too)."""
    changes = {spec.name: config_changes(spec, existing[spec.name], min_isr)
               for spec in specs if spec.name in existing}
    changes = {name: configs for name, configs in changes.items() if configs}
    if not changes:
        return {}
    responses = await admin.alter_configs([
        ConfigResource(ConfigResourceType.TOPIC, name, altered_configs(existing[name], configs))
        for name, configs in changes.items()])
    for response in responses:
        for error_code, error_message, _type, name in response.resources:
            if error_code:
                error = ConfigError if error_code in _CONFIG_ERROR_CODES else RouterError
                raise error(f"cannot alter the configs of topic {name}: {error_message} (Kafka error {error_code})")
    return changes
