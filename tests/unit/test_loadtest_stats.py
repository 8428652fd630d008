"""The load test's figures: latency from the right origin, per priority and path; errors, lost, duplicates."""

from __future__ import annotations

import pytest

from llmrouter.loadtest.display import Progress, counts_line, latency_table, progress_line
from llmrouter.loadtest.stats import Answer, LatencyStats, Tally, path_of

OK_CLOUD = Answer(status="ok", route="cloud")


def sent(tally: Tally, n: int, *, every_s: float = 0.01, late_s: float = 0.0, priority: str = "normal") -> None:
    """Record ``n`` sends after those already there, due every ``every_s``, each sent ``late_s`` late."""
    for _ in range(n):
        seq = tally.sent
        tally.record_send(seq, priority, due_s=seq * every_s, sent_s=seq * every_s + late_s)


def test_the_path_is_the_cache_level_for_a_hit_else_the_route():
    """A cache hit is reported by its level; any other answer by its route."""
    assert path_of("cache", "l1") == "l1" and path_of("cache", "l3") == "l3"
    assert path_of("local", "none") == "local" and path_of("cloud", "none") == "cloud"
    assert path_of("none", "none") == "none" and path_of("", "none") == "none"


def test_percentiles_interpolate_like_numpy():
    """p50 of 1..100 ms is 50.5 ms; p99 is 99.01 ms; max is the largest."""
    stats = LatencyStats.of([ms / 1000 for ms in range(1, 101)])
    assert stats.count == 100 and stats.p50_ms == pytest.approx(50.5) and stats.p99_ms == pytest.approx(99.01)
    assert stats.max_ms == pytest.approx(100) and stats.mean_ms == pytest.approx(50.5)
    assert LatencyStats.of([]) is None


def test_an_open_loop_counts_latency_from_the_due_time_so_a_late_sender_is_not_omitted():
    """Sent 40 ms late and answered 10 ms after the send: 50 ms, not 10."""
    tally = Tally("router", from_due=True)
    sent(tally, 1, late_s=0.040)
    tally.record_result(0, 0.050, OK_CLOUD)
    summary = tally.summary()
    assert summary.latency.p50_ms == pytest.approx(50) and summary.latency_from == "due"
    assert summary.send_lag.max_ms == pytest.approx(40)


def test_the_brokers_acknowledgement_is_timed_from_each_send_and_unacked_sends_are_left_out():
    """Acked 5 and 15 ms after their sends, the third never: two figures, p50 10 ms (so a load generator
    whose requests reach the broker late is told apart from a slow worker)."""
    tally = Tally("router", from_due=True)
    sent(tally, 3, every_s=0.1)
    tally.record_acked(0, 0.005)
    tally.record_acked(1, 0.115)
    ack = tally.summary().ack_lag
    assert ack.count == 2 and ack.p50_ms == pytest.approx(10) and ack.max_ms == pytest.approx(15)
    assert Tally("router", from_due=True).summary().ack_lag is None


def test_a_closed_loop_counts_latency_from_the_send():
    """Sent 40 ms late (no schedule to be late against) and answered 10 ms later: 10 ms, and no sender lag."""
    tally = Tally("router", from_due=False)
    sent(tally, 1, late_s=0.040)
    tally.record_result(0, 0.050, OK_CLOUD)
    summary = tally.summary()
    assert summary.latency.p50_ms == pytest.approx(10) and summary.send_lag is None


def test_latency_is_broken_down_per_priority_and_per_path():
    """Each answer counts once overall, once under its priority and once under its path."""
    tally = Tally("router", from_due=True)
    sent(tally, 2, priority="critical")
    sent(tally, 2, priority="low")
    tally.record_result(0, 0.005, Answer(route="cache", cache_level="l1"))
    tally.record_result(1, 0.015, Answer(route="cache", cache_level="l2"))
    tally.record_result(2, 0.120, Answer(route="local"))
    tally.record_result(3, 0.230, OK_CLOUD)
    summary = tally.summary()
    assert {p: s.count for p, s in summary.by_priority.items()} == {"critical": 2, "low": 2}
    assert summary.by_priority["low"].max_ms == pytest.approx(200)
    assert {p: s.p50_ms for p, s in summary.by_path.items()} == pytest.approx(
        {"l1": 5, "l2": 5, "local": 100, "cloud": 200})
    assert summary.latency.count == 4


def test_a_request_never_answered_is_lost_and_one_refused_by_the_broker_is_an_error_not_a_loss():
    """Lost means sent and unanswered; a send the broker refused is a send error, and not outstanding."""
    tally = Tally("router", from_due=True)
    sent(tally, 4)
    tally.record_result(0, 0.1, OK_CLOUD)
    tally.record_refused(2, "KafkaTimeoutError")
    summary = tally.summary()
    assert (summary.sent, summary.answered, summary.refused, summary.lost) == (4, 1, 1, 2)
    assert summary.lost_sample == [1, 3]
    assert summary.send_errors == {"KafkaTimeoutError": 1}
    assert tally.outstanding == 2


def test_a_send_reported_failed_that_is_answered_after_all_counts_as_answered():
    """A send that timed out on the client yet reached the broker is answered, not refused."""
    tally = Tally("router", from_due=True)
    sent(tally, 1)
    tally.record_refused(0, "RequestTimedOutError")
    tally.record_result(0, 0.1, OK_CLOUD)
    summary = tally.summary()
    assert (summary.answered, summary.refused, summary.lost, summary.send_errors) == (1, 0, 0, {})


def test_a_second_result_is_a_duplicate_unless_it_carries_the_replay_header():
    """Replays (the router's marked re-emissions) are counted apart; only unmarked extras are duplicates,
    and only the first result of a request counts for its latency."""
    tally = Tally("router", from_due=True)
    sent(tally, 3)
    assert tally.record_result(0, 0.1, OK_CLOUD)
    assert not tally.record_result(0, 0.2, OK_CLOUD)
    assert not tally.record_result(0, 0.3, OK_CLOUD)
    tally.record_result(1, 0.1, OK_CLOUD)
    tally.record_result(1, 0.2, Answer(route="cloud", replay=True))
    tally.record_result(2, 0.1, Answer(route="cloud", replay=True))  # a replay first: still the answer
    summary = tally.summary()
    assert (summary.duplicates, summary.replays, summary.answered, summary.latency.count) == (2, 2, 3, 3)


def test_errors_are_counted_by_status_and_code_and_each_is_a_problem():
    """Results that are not ok are counted by status/error_code, and --fail-on-loss fails on them."""
    tally = Tally("router", from_due=True)
    sent(tally, 3)
    tally.record_result(0, 0.1, Answer(status="error", error_code="all_providers_unavailable"))
    tally.record_result(1, 0.1, Answer(status="timeout", error_code="deadline_exceeded"))
    tally.record_result(2, 0.1, OK_CLOUD)
    summary = tally.summary()
    assert summary.errors == {"error/all_providers_unavailable": 1, "timeout/deadline_exceeded": 1}
    assert summary.error_count == 2
    assert summary.problems() == [
        "router: error results error/all_providers_unavailable x1, timeout/deadline_exceeded x1"]


def test_a_clean_run_has_no_problem_and_a_result_for_a_request_never_sent_is_a_stray():
    """Everything answered once and ok is clean; an answer to a request this run never sent is a problem."""
    tally = Tally("router", from_due=True)
    sent(tally, 2)
    tally.record_result(0, 0.1, OK_CLOUD)
    tally.record_result(1, 0.1, OK_CLOUD)
    assert tally.summary().problems() == []
    assert not tally.record_result(7, 0.2, OK_CLOUD)
    assert tally.summary().problems() == ["router: 1 result(s) for requests this run never sent"]


def test_throughput_is_counted_over_the_send_window_and_to_the_last_answer():
    """100 sends every 10 ms: 100/s sent; the last answer 0.99 + 0.5 s after the first due: 99/1.49 per second."""
    tally = Tally("router", from_due=True)
    sent(tally, 100)
    for seq in range(100):
        tally.record_result(seq, seq * 0.01 + (0.5 if seq == 99 else 0.01), OK_CLOUD)
    summary = tally.summary()
    assert summary.sent_rps == pytest.approx(100) and summary.answered_rps == pytest.approx(99 / 1.49)


def test_recent_latencies_are_handed_over_once_for_the_progress_line_beside_the_p95_so_far():
    """The progress line gets each latency once for its last interval, and the p95 of the whole run."""
    tally = Tally("router", from_due=True)
    sent(tally, 2)
    assert tally.p95_so_far_ms() is None
    tally.record_result(0, 0.02, OK_CLOUD)
    assert tally.take_recent() == [pytest.approx(0.02)]
    assert tally.take_recent() == []
    tally.record_result(1, 0.05, OK_CLOUD)
    assert tally.p95_so_far_ms() == pytest.approx(39)  # 20 and 40 ms (seq 1 was due at 10 ms)


def test_sends_are_recorded_in_order():
    """Sequence numbers index the per-request arrays, so a send out of order is a bug, refused loudly."""
    tally = Tally("router", from_due=True)
    with pytest.raises(ValueError, match="expected seq 0"):
        tally.record_send(3, "normal", due_s=0, sent_s=0)


def test_the_progress_line_shows_the_bar_counts_rate_and_p95_so_far_and_of_late():
    """Sending: the share sent; draining: the share answered; p95 overall and over the last interval."""
    line = progress_line(Progress(label="router", phase="sending", elapsed_s=5.0, sent=1500, expected=6000,
                                  answered=1490, interval_s=1.0, recent_answers=300, recent_p95_ms=15.04,
                                  p95_ms=12.44))
    assert line == ("[#####...............]  25% router sending 5.0s sent 1500/6000 answered 1490 300/s "
                    "p95 12.4 ms (last 1s 15.0 ms)")
    draining = progress_line(Progress(label="echo", phase="draining", elapsed_s=9.0, sent=100, expected=None,
                                      answered=50, interval_s=1.0, recent_answers=0, recent_p95_ms=None,
                                      p95_ms=8.0))
    assert draining.startswith("[##########..........]  50% echo draining") and draining.endswith(
        "0/s p95 8.0 ms (last 1s -)")


def test_the_table_has_a_row_per_priority_and_path_and_the_counts_line_says_what_was_lost():
    """One row for the run, then per priority and per path; the counts line names what was lost."""
    tally = Tally("router", from_due=True)
    sent(tally, 1, priority="high")
    sent(tally, 2, priority="low")
    tally.record_result(0, 0.005, Answer(route="cache", cache_level="l1"))
    tally.record_result(1, 0.1, OK_CLOUD)
    summary = tally.summary()
    rows = [line.split()[:3] for line in latency_table([summary]).splitlines()[1:]]
    assert rows == [["router", "all", "2"], ["priority", "high", "1"], ["priority", "low", "1"],
                    ["path", "cloud", "1"], ["path", "l1", "1"]]
    assert "lost 1, duplicates 0, replays 0, errors 0" in counts_line(summary)
