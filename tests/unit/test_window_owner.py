"""The owner's helpers that need no broker (llmrouter/alerting/owner.py, views.py): which partition a subject's
rows live in, which state changes are worth a changelog record, and the /windows/ view of some rows."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from llmrouter.alerting.owner import _moved, partition_of
from llmrouter.views.alerts import as_last_judged, windows_view
from llmrouter.core.alerts import FIRING, AlertState, Policy, Rule
from llmrouter.core.windows import Aggregate, Row, row_key

SECOND = 1000


def test_a_subjects_rows_are_in_the_partition_the_producer_sends_its_batches_to():
    """The owner finds a partition's subjects by hashing them as Kafka's default partitioner does."""
    for subject in ("all", "priority:low", "provider:together", "worker:host:6066", "provider:ünïcode"):
        for partitions in (1, 2, 4, 12):
            expected = DefaultPartitioner()(subject.encode(), list(range(partitions)), list(range(partitions)))
            assert partition_of(subject, partitions) == expected


def test_only_a_move_of_the_alert_is_written_not_the_figure_judged_each_tick():
    """A new value or judgement time alone writes nothing; a status, severity or detector change does."""
    firing = AlertState(status=FIRING, since_ms=5, severity="warning", value=0.2, judged_ms=10)
    assert not _moved(firing, AlertState(status=FIRING, since_ms=5, severity="warning", value=0.3, judged_ms=20))
    assert _moved(firing, AlertState(status="ok", value=0.01, judged_ms=20))
    assert _moved(firing, AlertState(status=FIRING, since_ms=5, severity="critical", escalations=1))
    assert not _moved(None, AlertState(value=0.0, judged_ms=1))
    assert _moved(None, AlertState(detector={"ewma": {"mean": 1, "var": 0, "n": 1}, "last_ms": 0}))


def test_the_windows_view_shows_the_latest_windows_each_rule_span_and_the_sum_retained():
    """Four one-second windows of a provider: newest first, limited; the failure rule's 2 s span ending at 3.5 s
    merges the three windows that overlap (1.5 s, 3.5 s]; 'retained' adds every window; unreadable rows are
    skipped."""
    rule = Rule(name="provider_failure_rate", measure="error_rate", subjects=frozenset({"provider"}), threshold=0.1,
                window_s=2)
    rows = {row_key("provider:p", start * SECOND): Row(Aggregate(count=10, errors=start)).to_bytes()
            for start in (0, 1, 2, 3)}
    rows[b"junk"] = b"{}"
    view = windows_view(rows, Policy(rules=(rule,), window_size_s=1), size_s=1, now_ms=3 * SECOND + 500, limit=2)
    subject = view["subjects"]["provider:p"]
    assert [w["start_ms"] for w in subject["windows"]] == [3000, 2000]
    span = subject["spans"]["provider_failure_rate"]
    assert (span["window_s"], span["count"], span["errors"]) == (3, 30, 1 + 2 + 3)
    assert subject["retained"]["count"] == 40 and subject["retained"]["windows"] == 4
    assert windows_view(rows, None, size_s=1, now_ms=0, limit=1, subject="all") == {"subjects": {}}


def test_the_alerts_view_shows_the_tables_state_when_it_is_newer_than_the_last_judged_here():
    """A worker that judged an alert 'ok' while it owned the subject, then lost it, and owns it again after
    the owner in between fired it: the view shows 'firing' from the table, not the old 'ok' (CI saw the old
    one right after a SIGKILL takeover); once judged here again, the new judgement."""
    old_here = AlertState(value=0.27, threshold=0.1, judged_ms=1_000)
    fired = AlertState(status=FIRING, since_ms=5_000, value=0.4, threshold=0.1, judged_ms=9_000)
    assert AlertState.from_bytes(as_last_judged(fired.to_bytes(), old_here)).status == FIRING
    judged_again = AlertState(status=FIRING, since_ms=5_000, value=0.35, threshold=0.1, judged_ms=12_000)
    assert AlertState.from_bytes(as_last_judged(fired.to_bytes(), judged_again)).value == 0.35
    assert as_last_judged(fired.to_bytes(), None) == fired.to_bytes()
    assert AlertState.from_bytes(as_last_judged(b"junk", judged_again)).judged_ms == 12_000
