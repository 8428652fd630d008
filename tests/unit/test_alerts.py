"""The alert rules (llmrouter/core/alerts.py) and the anomaly detector (llmrouter/core/anomaly.py), on a clock
the tests move."""

from __future__ import annotations

import pytest

from llmrouter.core.alerts import (FIRING, OK, PENDING, RESOLVED, AlertState, AnomalyRule, Policy, Rule,
                                   describe_states, evaluate, fingerprint, parse_state_key, state_key)
from llmrouter.core.anomaly import Ewma, judge
from llmrouter.core.windows import Aggregate

MINUTE = 60_000
FAILURES = Rule(name="provider_failure_rate", measure="error_rate", subjects=frozenset({"provider"}), threshold=0.10,
                window_s=60, min_count=10, severity="warning")
SLOW = Rule(name="response_time", measure="p95_latency_s", subjects=frozenset({"all", "priority"}), threshold=5.0,
            window_s=60, for_s=120, min_count=5)
HITS = Rule(name="cache_hit_rate", measure="hit_rate", subjects=frozenset({"all"}), threshold=0.70, window_s=60,
            min_count=10, below=True)
MEMORY = Rule(name="memory", measure="memory_bytes", subjects=frozenset({"worker"}), threshold=1.8e9, window_s=60)


def calls(n: int, failed: int, latency_ms: float = 100) -> Aggregate:
    a = Aggregate(count=n, errors=failed)
    for _ in range(n):
        a.observe_latency(latency_ms)
    return a


class Clock:
    """The owner's evaluations over time: states carried from one to the next, records collected."""

    def __init__(self, policy: Policy, subject: str) -> None:
        self.policy, self.subject = policy, subject
        self.states: dict[str, AlertState] = {}
        self.records: list[dict] = []

    def at(self, now_ms: int, windows: dict[int, Aggregate]) -> list[dict]:
        made = []
        for rule, (state, records) in evaluate(self.policy, self.subject, windows, self.states, now_ms).items():
            self.states[rule] = state
            made += records
        self.records += made
        return made


def test_a_provider_failing_more_than_its_threshold_fires_once_and_resolves_once():
    """20 % failures fire at the first evaluation; staying at 20 % makes no more records (de-duplicated);
    back to 0 % resolves, with the same fingerprint and since."""
    clock = Clock(Policy(rules=(FAILURES,)), "provider:flaky")
    [fired] = clock.at(MINUTE + 1000, {MINUTE: calls(50, 10)})
    assert (fired["state"], fired["value"], fired["threshold"], fired["severity"]) == (FIRING, 0.2, 0.1, "warning")
    assert fired["subject"] == "provider:flaky" and fired["since_ms"] == MINUTE + 1000
    assert fired["fingerprint"] == fingerprint("provider_failure_rate", "provider:flaky")
    assert "20.0%" in fired["message"] and "10.0%" in fired["message"]
    for t in range(2000, 50_000, 1000):
        assert clock.at(MINUTE + t, {MINUTE: calls(60, 12)}) == []
    [resolved] = clock.at(3 * MINUTE, {3 * MINUTE: calls(50, 0)})
    assert resolved["state"] == RESOLVED and resolved["since_ms"] == fired["since_ms"]
    assert resolved["fingerprint"] == fired["fingerprint"] and clock.states["provider_failure_rate"].status == OK


def test_too_few_calls_to_judge_never_fire_an_alert():
    """Nine calls all failing (min_count 10) are not enough to judge: nothing fires, nothing is pending."""
    clock = Clock(Policy(rules=(FAILURES,)), "provider:p")
    assert clock.at(MINUTE, {MINUTE: calls(9, 9)}) == []
    assert clock.states["provider_failure_rate"].status == OK


def test_a_firing_alert_rides_out_a_lull_shorter_than_its_window_and_resolves_after_a_whole_window_of_it():
    """A rebalance pauses a subject's traffic for a moment: too few calls for less than the rule's window (two
    one-minute windows here) keep it firing without a record; a whole window without enough data resolves it,
    as an absent series does."""
    clock = Clock(Policy(rules=(FAILURES,)), "provider:p")
    assert clock.at(MINUTE, {MINUTE: calls(10, 5)})[0]["state"] == FIRING
    assert clock.at(2 * MINUTE + 59_000, {2 * MINUTE: calls(3, 0)}) == []
    assert clock.states["provider_failure_rate"].status == FIRING
    [resolved] = clock.at(3 * MINUTE + 1, {3 * MINUTE: calls(3, 0)})
    assert resolved["state"] == RESOLVED and "not enough data (3 of 10)" in resolved["message"]


def test_a_slow_response_time_must_hold_for_two_minutes_before_it_fires():
    """p95 over 5 s: pending at first, firing only once it held 120 s; a dip before that starts over."""
    clock = Clock(Policy(rules=(SLOW,)), "all")
    slow = {w: calls(20, 0, latency_ms=8000) for w in range(0, 10 * MINUTE, MINUTE)}
    assert clock.at(0, slow) == [] and clock.states["response_time"].status == PENDING
    assert clock.at(119_999, slow) == []
    [fired] = clock.at(120_000, slow)
    assert fired["state"] == FIRING and fired["since_ms"] == 0 and fired["value"] > 5.0

    restart = Clock(Policy(rules=(SLOW,)), "all")
    restart.at(0, slow)
    restart.at(60_000, {w: calls(20, 0, latency_ms=100) for w in range(0, 10 * MINUTE, MINUTE)})
    assert restart.states["response_time"].status == OK
    assert restart.at(150_000, slow) == [] and restart.states["response_time"].since_ms == 150_000


def test_a_firing_alert_that_persists_escalates_one_severity_at_a_time_up_to_critical():
    """escalate_after_s 300: warning at 0, critical at 300 s (one more record), nothing more at 600 s."""
    clock = Clock(Policy(rules=(FAILURES,), escalate_after_s=300), "provider:p")
    failing = {w: calls(50, 25) for w in range(0, 20 * MINUTE, MINUTE)}
    assert [r["severity"] for r in clock.at(0, failing)] == ["warning"]
    assert clock.at(299_000, failing) == []
    [escalated] = clock.at(300_000, failing)
    assert (escalated["state"], escalated["severity"], escalated["escalations"]) == (FIRING, "critical", 1)
    assert escalated["since_ms"] == 0 and "escalated to critical" in escalated["message"]
    assert clock.at(900_000, failing) == []
    [resolved] = clock.at(1_200_000, {})
    assert resolved["severity"] == "critical"


def test_the_cache_hit_rate_fires_below_its_threshold():
    """A 'below' rule: 50 % hits under 70 % fires; 90 % does not."""
    hits = Aggregate(count=20, cache_hits=10)
    assert Clock(Policy(rules=(HITS,)), "all").at(0, {0: hits})[0]["value"] == 0.5
    assert Clock(Policy(rules=(HITS,)), "all").at(0, {0: Aggregate(count=20, cache_hits=18)}) == []


def test_memory_over_its_limit_fires_for_the_worker_that_reported_it():
    """A worker subject's highest resident memory in the window against 1.8 GB."""
    clock = Clock(Policy(rules=(MEMORY,)), "worker:host:6066")
    [fired] = clock.at(0, {0: Aggregate(memory_max_bytes=int(2e9))})
    assert fired["rule"] == "memory" and "2.00 GB" in fired["message"]


def test_rules_judge_only_the_subjects_of_their_kind():
    """The provider failure rule does not judge 'all'; the response time rule does not judge a provider."""
    policy = Policy(rules=(FAILURES, SLOW, HITS, MEMORY))
    assert [r.name for r in policy.rules_for("provider:x")] == ["provider_failure_rate"]
    assert [r.name for r in policy.rules_for("all")] == ["response_time", "cache_hit_rate"]
    assert [r.name for r in policy.rules_for("priority:low")] == ["response_time"]


def test_a_restored_firing_state_makes_no_new_firing():
    """What an owner that took over reads from the changelog: still failing, no record; recovered, one resolved."""
    state = AlertState(status=FIRING, since_ms=1000, severity="warning")
    restored = AlertState.from_bytes(state.to_bytes())
    assert restored == state
    clock = Clock(Policy(rules=(FAILURES,)), "provider:p")
    clock.states["provider_failure_rate"] = restored
    assert clock.at(MINUTE, {MINUTE: calls(40, 10)}) == []
    assert [r["state"] for r in clock.at(2 * MINUTE, {2 * MINUTE: calls(40, 0)})] == [RESOLVED]


def test_a_rule_with_a_bad_measure_or_severity_is_refused_in_a_sentence():
    """Rules are checked when made."""
    with pytest.raises(ValueError, match="no measure"):
        Rule(name="r", measure="nope", subjects=frozenset({"all"}), threshold=1, window_s=60)
    with pytest.raises(ValueError, match="severity"):
        Rule(name="r", measure="error_rate", subjects=frozenset({"all"}), threshold=1, window_s=60, severity="page")


def test_state_keys_and_the_views_description():
    """Keys read back; the views list firing alerts first with their fingerprint."""
    assert parse_state_key(state_key("memory", "worker:h:1")) == ("memory", "worker:h:1")
    described = describe_states({state_key("a", "all"): AlertState().to_bytes(),
                                 state_key("b", "all"): AlertState(status=FIRING, since_ms=5).to_bytes(),
                                 b"junk": b"{}"})
    assert [(d["rule"], d["status"]) for d in described] == [("b", FIRING), ("a", OK)]


# ---- anomalies --------------------------------------------------------------------------------------------------


LATENCY_ANOMALY = AnomalyRule(name="latency_anomaly", measure="mean_latency_ms", subjects=frozenset({"provider"}),
                              alpha=0.2, z=3.0, warmup=5, min_std=10.0, min_count=5, settle_s=2.0)


def test_the_ewma_learns_a_steady_figure_and_a_jump_gets_a_high_z():
    """After 20 windows around 100 ms (+-5), 100 is ordinary and 400 is many deviations above."""
    ewma = Ewma()
    for i in range(20):
        ewma = ewma.update(100 + (5 if i % 2 else -5), alpha=0.2)
    assert ewma.mean == pytest.approx(100, abs=3)
    assert abs(ewma.zscore(100, warmup=5, min_std=1)) < 1
    assert ewma.zscore(400, warmup=5, min_std=1) > 10
    assert Ewma().zscore(400, warmup=5, min_std=1) is None  # still learning


def test_the_deviation_floor_keeps_a_perfectly_steady_provider_from_flagging_a_wobble():
    """std 0 after identical windows: 103 ms against 100 is z = 0.3 with min_std 10, not infinite."""
    ewma = Ewma()
    for _ in range(10):
        ewma = ewma.update(100, alpha=0.2)
    _, verdict = judge(ewma, 103, alpha=0.2, z_limit=3, warmup=5, min_std=10)
    assert not verdict.anomalous and verdict.z == pytest.approx(0.3) and verdict.threshold == pytest.approx(130)


def test_a_provider_suddenly_slower_than_usual_fires_a_latency_anomaly_and_resolves_when_it_recovers():
    """Ten closed windows at ~100 ms teach the detector; a window at 1,000 ms (far under the 5 s rule) is an
    anomaly; each window is judged once, after it closed and settled; back to 100 ms resolves."""
    clock = Clock(Policy(anomalies=(LATENCY_ANOMALY,), window_size_s=60), "provider:p")
    windows = {w * MINUTE: calls(20, 0, latency_ms=80 + 10 * (w % 3)) for w in range(10)}
    assert clock.at(10 * MINUTE + 2000, windows) == []
    assert clock.states["latency_anomaly"].detector["last_ms"] == 9 * MINUTE
    windows[10 * MINUTE] = calls(20, 0, latency_ms=1000)
    assert clock.at(11 * MINUTE + 1000, windows) == []  # closed, not settled yet
    [fired] = clock.at(11 * MINUTE + 2000, windows)
    assert fired["rule"] == "latency_anomaly" and fired["value"] > 500 and fired["threshold"] < 500
    assert clock.at(11 * MINUTE + 30_000, windows) == []  # the same window is not judged twice
    windows[11 * MINUTE] = calls(20, 0, latency_ms=90)
    [resolved] = clock.at(12 * MINUTE + 2000, windows)
    assert resolved["state"] == RESOLVED


def test_a_window_with_too_few_calls_teaches_the_detector_nothing():
    """3 calls (min_count 5) are skipped: the EWMA is unchanged and no verdict holds."""
    clock = Clock(Policy(anomalies=(LATENCY_ANOMALY,), window_size_s=60), "provider:p")
    clock.at(2 * MINUTE + 5000, {0: calls(20, 0), MINUTE: calls(3, 0, latency_ms=9000)})
    assert clock.states["latency_anomaly"].detector["ewma"]["n"] == 1


def test_an_alert_written_with_the_first_alert_schema_is_still_read_with_the_added_fields_defaults():
    """schemas/history/Alert.1.avsc is the Alert before severity, since_ms, fingerprint and escalations: a
    consumer with today's schema reads an old record, and a record of today round-trips whole."""
    import io
    import json

    import avro.schema
    import fastavro

    from llmrouter.wire.codec import MAGIC, Codec
    from llmrouter.schemas import history

    first = next(schema for schema in history() if schema["name"] == "Alert")
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(first), {
        "rule": "error_rate", "state": "firing", "value": 0.3, "threshold": 0.1, "window_s": 60, "subject": "all",
        "message": "", "at_ms": 5})
    header = MAGIC + avro.schema.parse(json.dumps(first)).fingerprint("CRC-64-AVRO")
    old = Codec().decode("Alert", header + body.getvalue())
    assert (old["rule"], old["severity"], old["since_ms"], old["fingerprint"], old["escalations"]) == (
        "error_rate", "warning", 0, "", 0)
    clock = Clock(Policy(rules=(FAILURES,)), "provider:flaky")
    [record] = clock.at(MINUTE, {MINUTE: calls(20, 10)})
    assert Codec().decode("Alert", Codec().encode("Alert", record)) == record
