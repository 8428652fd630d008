"""What the router's topics should look like, and what is wrong with those that exist.

Pure: no Kafka client here. :mod:`llmrouter.runtime.kafka_admin` reads the topics
(partition counts, effective configs), asks :func:`check_topics`, and acts:

- a **problem** stops the worker (and ``llmrouter topics create``) with a
  :class:`~llmrouter.errors.ConfigError` listing every one and what to do:
  a partition count that differs where tables and their sources must agree,
  llm.providers not compacted (registrations would be deleted by time);
- a **drift** (retention, min ISR or cleanup policy other than the settings
  say) is reported, never changed silently: ``llmrouter topics create
  --apply-configs`` sets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llmrouter.topics import TopicSpec

CLEANUP_POLICY = "cleanup.policy"
RETENTION_MS = "retention.ms"
MIN_INSYNC_REPLICAS = "min.insync.replicas"
CHECKED_CONFIGS = (CLEANUP_POLICY, RETENTION_MS, MIN_INSYNC_REPLICAS)
APPLY_COMMAND = "llmrouter topics create --apply-configs"
MIN_ISR_CAP = 2  # acks=all waits for this many replicas at most, however many there are


def min_insync_replicas(replication_factor: int, configured: int | None = None) -> int:
    """The min ISR of the router's topics: ``configured`` if set, else 1 for a single replica
    and one fewer than the replicas for more (so one broker may be down), at most 2."""
    if configured is not None:
        return configured
    return 1 if replication_factor == 1 else min(replication_factor - 1, MIN_ISR_CAP)


def topic_configs(spec: TopicSpec, min_isr: int) -> dict[str, str]:
    """The topic-level configs ``spec`` should have (the router sets them when it creates it).

    A compacted topic with a retention is also deleted by time (``compact,delete``: the
    answered table's changelog forgets answers older than the idempotency window)."""
    if spec.compacted and spec.retention_ms is None:
        return {CLEANUP_POLICY: "compact", MIN_INSYNC_REPLICAS: str(min_isr)}
    policy = "compact,delete" if spec.compacted else "delete"
    return {CLEANUP_POLICY: policy, RETENTION_MS: str(spec.retention_ms), MIN_INSYNC_REPLICAS: str(min_isr)}


@dataclass(frozen=True)
class ExistingTopic:
    """A topic as the broker describes it: ``configs`` are the effective values of
    :data:`CHECKED_CONFIGS`, ``overrides`` every config set on the topic itself."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """Something that stops the worker; ``fix`` says what to do about it.
    ``by_apply``: ``topics create --apply-configs`` fixes it."""

    topic: str
    what: str
    fix: str
    by_apply: bool = False

    def __str__(self) -> str:
        return f"{self.what}. {self.fix}"


@dataclass(frozen=True)
class Drift:
    """A config of an existing topic that differs from the settings (reported, not changed)."""

    topic: str
    key: str
    actual: str | None
    expected: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.key} is {_readable(self.key, self.actual)}, " \
               f"the settings say {_readable(self.key, self.expected)}"


@dataclass(frozen=True)
class TopicCheck:
    problems: list[Problem]
    drift: list[Drift]
    missing: list[TopicSpec]  # the router's own topics that do not exist yet: it creates them


def check_topics(specs: Iterable[TopicSpec], existing: Mapping[str, ExistingTopic], min_isr: int) -> TopicCheck:
    """Compare every spec with the topic of that name, if there is one."""
    problems: list[Problem] = []
    drift: list[Drift] = []
    missing: list[TopicSpec] = []
    for spec in specs:
        topic = existing.get(spec.name)
        if topic is None:
            if spec.managed:
                missing.append(spec)
            continue
        if spec.exact_partitions and topic.partitions != spec.partitions:
            problems.append(_partition_problem(spec, topic.partitions))
        for key, expected in config_changes(spec, topic, min_isr).items():
            actual = topic.configs.get(key)
            if spec.compacted and spec.retention_ms is None and key == CLEANUP_POLICY:
                problems.append(Problem(
                    spec.name, f"{spec.name} has cleanup.policy={actual}, expected compact: provider registrations "
                               f"would be deleted by time",
                    f"Run `{APPLY_COMMAND}` to set cleanup.policy=compact", by_apply=True))
            else:
                drift.append(Drift(spec.name, key, actual, expected))
    return TopicCheck(problems=problems, drift=drift, missing=missing)


def _partition_problem(spec: TopicSpec, actual: int) -> Problem:
    expected = spec.partitions
    what = f"{spec.name} has {actual} partition(s), expected {expected}"
    if not spec.partitions_setting:
        return Problem(spec.name, what + " (fixed)",
                       f"Delete {spec.name} and let the router create it again (then register the run-time "
                       f"providers again: `llmrouter providers register`)")
    what += f" ({spec.partitions_setting})"
    match = f"set {spec.partitions_setting}: {actual} if every topic it sizes has {actual}"
    if not spec.managed:
        return Problem(spec.name, what, f"A table's changelog must have as many partitions as the accepted "
                                        f"topics: {match}, or delete {spec.name} (what the table holds goes "
                                        f"with it: for the answered table, requests already answered may be "
                                        f"answered again)")
    if actual > expected:
        return Problem(spec.name, what, f"Kafka cannot remove partitions: {match}, or delete {spec.name} once it is "
                                        f"drained and let the worker create it again")
    return Problem(spec.name, what, f"Either {match}, or add partitions (kafka-topics.sh --alter --topic "
                                    f"{spec.name} --partitions {expected}; keys then move to other partitions, "
                                    f"so only while the topic is drained)")


def problems_message(problems: list[Problem]) -> str:
    """The text of the error that stops the worker: every problem, each with what to do."""
    lines = [f"the router's topics do not fit the settings ({len(problems)} problem(s)); nothing was changed:"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def config_changes(spec: TopicSpec, topic: ExistingTopic, min_isr: int) -> dict[str, str]:
    """The configs of :func:`topic_configs` that ``topic`` does not have yet, with the values it should."""
    return {key: expected for key, expected in topic_configs(spec, min_isr).items()
            if not _same(key, topic.configs.get(key), expected)}


def altered_configs(topic: ExistingTopic, wanted: Mapping[str, str]) -> dict[str, str]:
    """The whole set of overrides to give ``topic`` so it gets ``wanted`` and keeps its other overrides.

    aiokafka has only the (non-incremental) AlterConfigs request, which replaces every
    override of a topic by the set it is given: whatever is not in it falls back to the
    broker's default. So the topic's own overrides go in too.
    """
    return {**topic.overrides, **wanted}


def _same(key: str, actual: str | None, expected: str) -> bool:
    if actual is None:
        return False
    if key == CLEANUP_POLICY:
        return sorted(actual.replace(" ", "").split(",")) == sorted(expected.split(","))
    return actual.strip() == expected


_UNITS_MS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000))


def _readable(key: str, value: str | None) -> str:
    """``retention.ms`` values with a unit a person reads (``604800000 (7 d)``); others as they are."""
    if value is None:
        return "not set"
    if key != RETENTION_MS or not value.lstrip("-").isdigit():
        return value
    ms = int(value)
    if ms < 0:
        return f"{value} (unlimited)"
    for unit, size in _UNITS_MS:
        if ms >= size and ms % size == 0:
            return f"{value} ({ms // size} {unit})"
    return f"{value} ms"
