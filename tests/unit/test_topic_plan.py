"""The router's topics as the settings want them: retention and configs per topic, the
min-ISR rule, and the problems and drift found on topics that already exist."""

from __future__ import annotations

import pytest

from llmrouter.errors import ConfigError
from llmrouter.config.settings import load_settings
from llmrouter.runtime.topic_plan import (ExistingTopic, altered_configs, check_topics, min_insync_replicas,
                                  problems_message, topic_configs)
from llmrouter.topics import topic_specs

HOUR_MS = 3_600_000


def settings(**kafka: object):
    """The shipped defaults with a prefix, two partitions everywhere and ``kafka`` over them."""
    env = {"LLMROUTER__KAFKA__TOPIC_PREFIX": "p.", "LLMROUTER__KAFKA__PARTITIONS": "2",
           "LLMROUTER__KAFKA__REQUEST_PARTITIONS": "2", "LLMROUTER__WORKER__APP_ID": "app"}
    env |= {f"LLMROUTER__KAFKA__{key.upper()}": str(value) for key, value in kafka.items()}
    return load_settings(env=env)


def by_name(s) -> dict:
    return {spec.name: spec for spec in topic_specs(s)}


def existing_as_wanted(s, min_isr: int = 1) -> dict[str, ExistingTopic]:
    """Every topic of the settings, as if the router had just created it."""
    return {spec.name: ExistingTopic(spec.name, spec.partitions, topic_configs(spec, min_isr))
            for spec in topic_specs(s)}


def test_each_topic_keeps_its_records_as_long_as_its_use_needs():
    """Defaults: requests and accepted 7 days, results 3, stream 1 hour, DLQ 14 days,
    events and alerts 7; llm.providers compacted, never deleted by time."""
    specs = by_name(settings())
    assert specs["p.llm.requests.critical"].retention_ms == 7 * 24 * HOUR_MS
    assert specs["p.llm.router.accepted.low"].retention_ms == 7 * 24 * HOUR_MS
    assert specs["p.llm.results"].retention_ms == 3 * 24 * HOUR_MS
    assert specs["p.llm.stream"].retention_ms == HOUR_MS
    assert specs["p.llm.dlq"].retention_ms == 14 * 24 * HOUR_MS
    assert specs["p.llm.events"].retention_ms == specs["p.llm.alerts"].retention_ms == 7 * 24 * HOUR_MS
    providers = specs["p.llm.providers"]
    assert providers.compacted and providers.retention_ms is None and providers.partitions == 1


def test_the_flags_topic_is_one_compacted_partition_the_router_creates_and_never_expires():
    """llm.router.flags: a degradation flag holds until an operator clears it, however long that is."""
    flags = by_name(settings())["p.llm.router.flags"]
    assert (flags.partitions, flags.compacted, flags.retention_ms, flags.managed) == (1, True, None, True)


def test_retention_comes_from_the_settings_in_hours():
    """kafka.retention.<topic>_hours sets retention.ms; fractions of an hour are fine."""
    specs = by_name(settings(retention__stream_hours=0.5, retention__dlq_hours=48))
    assert specs["p.llm.stream"].retention_ms == HOUR_MS // 2
    assert specs["p.llm.dlq"].retention_ms == 48 * HOUR_MS


def test_a_deleted_topic_gets_retention_and_min_isr_and_a_compacted_one_no_retention():
    """The configs set at creation: cleanup policy, retention.ms (not for compacted), min ISR."""
    specs = by_name(settings())
    assert topic_configs(specs["p.llm.stream"], 2) == {
        "cleanup.policy": "delete", "retention.ms": str(HOUR_MS), "min.insync.replicas": "2"}
    assert topic_configs(specs["p.llm.providers"], 1) == {"cleanup.policy": "compact", "min.insync.replicas": "1"}


def test_the_answered_changelog_is_checked_but_left_to_faust_to_create():
    """Faust creates "<app id>-answered-changelog" (no prefix); the router only checks its partitions."""
    changelog = by_name(settings())["app-answered-changelog"]
    assert not changelog.managed and changelog.partitions == 2 and changelog.partitions_setting == "kafka.partitions"
    assert [spec.name for spec in check_topics(topic_specs(settings()), {}, 1).missing].count(changelog.name) == 0


@pytest.mark.parametrize("replicas, expected", [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_min_isr_is_one_fewer_than_the_replicas_at_most_two(replicas, expected):
    """1 for a single replica; else rf - 1 (one broker may be down), capped at 2."""
    assert min_insync_replicas(replicas) == expected


def test_a_configured_min_isr_wins_but_never_above_the_replicas():
    """kafka.min_insync_replicas overrides the rule; more than the replication factor is refused."""
    assert min_insync_replicas(5, configured=3) == 3
    assert settings(replication_factor=3, min_insync_replicas=3).kafka.min_insync_replicas == 3
    with pytest.raises(ConfigError, match="min_insync_replicas .3. cannot exceed replication_factor .1."):
        settings(min_insync_replicas=3)


def test_the_answered_changelog_is_compacted_and_deleted_after_the_idempotency_window():
    """Its configs: compact,delete with the window as retention; one created compact-only (before
    the window existed) is drift, which `topics create --apply-configs` sets."""
    s = settings()
    changelog = by_name(s)["app-answered-changelog"]
    window_ms = str(round(s.tables.idempotency_window_s * 1000))
    assert topic_configs(changelog, 1) == {"cleanup.policy": "compact,delete", "retention.ms": window_ms,
                                           "min.insync.replicas": "1"}
    old = ExistingTopic(changelog.name, 2, {"cleanup.policy": "compact", "retention.ms": window_ms,
                                            "min.insync.replicas": "1"})
    check = check_topics([changelog], {changelog.name: old}, 1)
    assert check.problems == [] and [d.key for d in check.drift] == ["cleanup.policy"]


def test_topics_as_the_router_creates_them_have_no_problem_and_no_drift():
    """Freshly created topics (and the changelog) pass the check."""
    s = settings()
    check = check_topics(topic_specs(s), existing_as_wanted(s), 1)
    assert (check.problems, check.drift, check.missing) == ([], [], [])


def test_missing_topics_are_listed_for_creation():
    """Only the router's own topics are created; faust makes the changelog."""
    s = settings()
    existing = existing_as_wanted(s)
    del existing["p.llm.dlq"], existing["app-answered-changelog"]
    assert [spec.name for spec in check_topics(topic_specs(s), existing, 1).missing] == ["p.llm.dlq"]


def test_every_wrong_partition_count_is_a_problem_naming_the_topic_its_count_and_the_expected_one():
    """Request, accepted, changelog and providers topics must have their exact count; each
    problem names the count, the expected one, the setting behind it and what to do."""
    s = settings()
    existing = existing_as_wanted(s)
    for name, count in [("p.llm.requests.normal", 3), ("p.llm.router.accepted.high", 1),
                        ("app-answered-changelog", 4), ("p.llm.providers", 2)]:
        existing[name] = ExistingTopic(name, count, existing[name].configs)
    problems = check_topics(topic_specs(s), existing, 1).problems
    text = [str(problem) for problem in problems]
    assert [problem.topic for problem in problems] == [
        "p.llm.requests.normal", "p.llm.router.accepted.high", "p.llm.providers", "app-answered-changelog"]
    assert text[0].startswith("p.llm.requests.normal has 3 partition(s), expected 2 (kafka.request_partitions)")
    assert "Kafka cannot remove partitions" in text[0]
    assert text[1].startswith("p.llm.router.accepted.high has 1 partition(s), expected 2 (kafka.partitions)")
    assert "kafka-topics.sh --alter --topic p.llm.router.accepted.high --partitions 2" in text[1]
    assert "has 2 partition(s), expected 1 (fixed)" in text[2]
    assert "changelog must have as many partitions as the accepted topics" in text[3]
    assert not any(problem.by_apply for problem in problems)


def test_output_topics_work_with_any_partition_count():
    """Results, stream, DLQ, events and alerts are read whole: another count is no problem."""
    s = settings()
    existing = existing_as_wanted(s)
    existing["p.llm.results"] = ExistingTopic("p.llm.results", 7, existing["p.llm.results"].configs)
    assert check_topics(topic_specs(s), existing, 1).problems == []


def test_providers_not_compacted_is_a_problem_that_apply_configs_fixes():
    """llm.providers with cleanup.policy=delete (or compact,delete) would lose registrations."""
    s = settings()
    existing = existing_as_wanted(s)
    for policy in ("delete", "compact,delete"):
        existing["p.llm.providers"] = ExistingTopic("p.llm.providers", 1, {"cleanup.policy": policy,
                                                                           "min.insync.replicas": "1"})
        [problem] = check_topics(topic_specs(s), existing, 1).problems
        assert problem.by_apply and f"cleanup.policy={policy}, expected compact" in str(problem)
        assert "llmrouter topics create --apply-configs" in problem.fix


def test_other_retention_min_isr_or_policy_is_drift_reported_with_readable_values():
    """A week-long llm.stream (the broker default of a topic made before), another min ISR or
    a compacted llm.results are drift: reported, never a reason to stop."""
    s = settings()
    existing = existing_as_wanted(s)
    existing["p.llm.stream"] = ExistingTopic("p.llm.stream", 2, {
        "cleanup.policy": "delete", "retention.ms": str(7 * 24 * HOUR_MS), "min.insync.replicas": "1"})
    existing["p.llm.results"] = ExistingTopic("p.llm.results", 2, {
        "cleanup.policy": "compact", "retention.ms": str(3 * 24 * HOUR_MS), "min.insync.replicas": "2"})
    check = check_topics(topic_specs(s), existing, 1)
    assert check.problems == []
    assert [(d.topic, d.key, d.actual, d.expected) for d in check.drift] == [
        ("p.llm.results", "cleanup.policy", "compact", "delete"),
        ("p.llm.results", "min.insync.replicas", "2", "1"),
        ("p.llm.stream", "retention.ms", str(7 * 24 * HOUR_MS), str(HOUR_MS))]
    assert str(check.drift[2]) == "p.llm.stream: retention.ms is 604800000 (7 d), the settings say 3600000 (1 h)"


def test_the_error_lists_every_problem_and_says_nothing_was_changed():
    """One message, one line per problem."""
    s = settings()
    existing = existing_as_wanted(s)
    existing["p.llm.requests.low"] = ExistingTopic("p.llm.requests.low", 5, existing["p.llm.requests.low"].configs)
    existing["p.llm.providers"] = ExistingTopic("p.llm.providers", 1, {"cleanup.policy": "delete"})
    message = problems_message(check_topics(topic_specs(s), existing, 1).problems)
    lines = message.splitlines()
    assert lines[0] == "the router's topics do not fit the settings (2 problem(s)); nothing was changed:"
    assert lines[1].startswith("  - p.llm.requests.low has 5 partition(s), expected 2")
    assert lines[2].startswith("  - p.llm.providers has cleanup.policy=delete")


def test_altering_keeps_the_topics_other_overrides():
    """AlterConfigs replaces every override of a topic: the ones the router does not set go along."""
    topic = ExistingTopic("t", 1, overrides={"segment.ms": "600000", "retention.ms": "604800000"})
    assert altered_configs(topic, {"retention.ms": "3600000"}) == {"segment.ms": "600000", "retention.ms": "3600000"}
