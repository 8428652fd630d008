"""The windowed aggregates (llmrouter/core/windows.py): buckets, merge, quantiles, window keys, idempotent apply."""

from __future__ import annotations

import random

import pytest

from llmrouter.core.windows import (LATENCY_BOUNDS_MS, Aggregate, Batch, Deltas, Row, apply_batch, merge_all,
                                    parse_row_key, row_key, span_starts, window_start)

MINUTE = 60_000


def with_latencies(*latencies_ms: float, errors: int = 0) -> Aggregate:
    a = Aggregate(count=len(latencies_ms), errors=errors)
    for latency in latencies_ms:
        a.observe_latency(latency)
    return a


def test_a_latency_on_a_bucket_edge_counts_in_that_bucket_as_prometheus_le_does():
    """5 ms is in the "le 5" bucket, 5.1 ms in the next one, anything past the last bound in the overflow one."""
    a = with_latencies(5, 5.1, 120_000)
    assert a.latency_counts[0] == 1 and a.latency_counts[1] == 1 and a.latency_counts[-1] == 1
    assert len(a.latency_counts) == len(LATENCY_BOUNDS_MS) + 1


def test_the_p95_is_read_from_the_buckets_within_one_bucket_of_the_true_value():
    """1,000 latencies spread 0-3 s: the bucketed p95 lies in the same bucket as the exact one."""
    rng = random.Random(7)
    latencies = sorted(rng.uniform(0, 3000) for _ in range(1000))
    a = with_latencies(*latencies)
    exact = latencies[949]
    estimate = a.quantile_ms(0.95)
    assert 2000 <= exact <= 5000 and 2000 <= estimate <= 5000


def test_a_quantile_interpolates_linearly_inside_its_bucket():
    """Ten latencies all in (1000, 2000]: p50 is halfway through that bucket, 1,500 ms."""
    assert with_latencies(*[1500] * 10).quantile_ms(0.5) == pytest.approx(1500)


def test_a_quantile_past_the_last_bound_is_the_last_bound_and_none_without_latencies():
    """As histogram_quantile does: the overflow bucket has no upper edge to interpolate to."""
    assert with_latencies(90_000, 90_000).quantile_ms(0.95) == LATENCY_BOUNDS_MS[-1]
    assert Aggregate().quantile_ms(0.95) is None


def test_merging_adds_every_count_and_keeps_the_highest_memory_and_changes_neither_side():
    """Associative and exact: the sum of two halves is the whole."""
    a, b = with_latencies(10, 20, errors=1), with_latencies(3000)
    a.memory_max_bytes, b.memory_max_bytes = 5, 9
    merged = a.merge(b)
    assert (merged.count, merged.errors, merged.latencies, merged.memory_max_bytes) == (3, 1, 3, 9)
    assert a.count == 2 and b.count == 1
    whole = with_latencies(10, 20, 3000, errors=1)
    assert merged.latency_counts == whole.latency_counts and merged.latency_sum_ms == whole.latency_sum_ms


def test_an_aggregate_survives_its_json_form():
    """to_dict/from_dict round trip, and a wrong bucket count is refused."""
    a = with_latencies(1, 200, 7000, errors=2)
    a.cost_usd, a.prompt_tokens = 0.25, 12
    assert Aggregate.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError):
        Aggregate.from_dict({**a.to_dict(), "lc": [1, 2]})


def test_windows_are_aligned_to_the_epoch():
    """A minute window starts on the minute."""
    assert window_start(10 * MINUTE + 59_999, MINUTE) == 10 * MINUTE
    assert window_start(10 * MINUTE, MINUTE) == 10 * MINUTE


def test_a_hopping_span_is_the_tumbling_windows_that_overlap_it_the_open_one_included():
    """Two minutes ending 30 s into minute 12: minutes 10 (its last 30 s), 11 and 12; a span of one minute ending
    on a minute's first millisecond is that minute and the one before."""
    assert span_starts(12 * MINUTE + 30_000, MINUTE, 2 * MINUTE) == [10 * MINUTE, 11 * MINUTE, 12 * MINUTE]
    assert span_starts(12 * MINUTE, MINUTE, MINUTE) == [11 * MINUTE, 12 * MINUTE]
    assert span_starts(12 * MINUTE + 59_999, MINUTE, MINUTE) == [12 * MINUTE]


def test_a_row_key_names_its_subject_and_window_and_parses_back():
    """Subjects may hold colons (provider:x); the window start follows the last @."""
    key = row_key("provider:my@vllm", 120_000)
    assert parse_row_key(key) == ("provider:my@vllm", 120_000)
    with pytest.raises(ValueError):
        parse_row_key(b"no-window")


def test_a_result_counts_under_all_and_its_priority_and_a_cache_hit_uses_no_tokens():
    """Results by status and route: error and timeout are errors, rejected is not; a cache hit counts as a hit."""
    d = Deltas(MINUTE)
    common = {"priority": "high", "latency_ms": 40, "prompt_tokens": 10, "completion_tokens": 5, "at_ms": 1000}
    d.result(status="ok", route="cloud", cost_usd=0.01, **common)
    d.result(status="ok", route="cache", cost_usd=0.0, **common)
    d.result(status="error", route="none", cost_usd=0.0, **common)
    d.result(status="rejected", route="none", cost_usd=0.0, **common)
    drained = d.drain()
    assert set(drained) == {"all", "priority:high"} and not d
    a = drained["all"][0]
    assert (a.count, a.errors, a.cache_hits, a.prompt_tokens, a.completion_tokens) == (4, 1, 1, 30, 15)
    assert drained["priority:high"][0] == a


def test_provider_calls_count_failures_and_skip_what_was_never_called():
    """error and timeout are failures, a hedge's cancelled loser is a call but no failure, skipped is no call."""
    d = Deltas(MINUTE)
    for outcome in ("ok", "error", "timeout", "cancelled", "skipped"):
        d.call(provider="together", outcome=outcome, latency_ms=100, at_ms=MINUTE + 5)
    d.spent(provider="together", prompt_tokens=7, completion_tokens=3, cost_usd=0.002, at_ms=MINUTE + 6)
    a = d.drain()["provider:together"][MINUTE]
    assert (a.count, a.errors, a.latencies, a.prompt_tokens, a.cost_usd) == (4, 2, 4, 7, 0.002)


def test_outcomes_either_side_of_a_minute_land_in_two_windows():
    """The batch of a flush that straddles a minute carries both windows."""
    d = Deltas(MINUTE)
    d.call(provider="p", outcome="ok", latency_ms=1, at_ms=MINUTE - 1)
    d.call(provider="p", outcome="ok", latency_ms=1, at_ms=MINUTE)
    assert sorted(d.drain()["provider:p"]) == [0, MINUTE]


def test_a_batch_delivered_twice_is_added_once_and_each_sender_counts_apart():
    """The row's marks: worker A's batch 3 again is skipped; worker B's batch 1 is added."""
    one = with_latencies(10)
    row = apply_batch(None, sender="A", seq=3, delta=one)
    assert apply_batch(row, sender="A", seq=3, delta=one) is None
    assert apply_batch(row, sender="A", seq=2, delta=one) is None
    row = apply_batch(row, sender="B", seq=1, delta=one)
    row = apply_batch(row, sender="A", seq=4, delta=one)
    assert row.aggregate.count == 3 and row.marks == {"A": 4, "B": 1}


def test_batches_and_rows_survive_their_bytes():
    """What travels on the outcomes topic and what the table keeps both read back as they were written."""
    batch = Batch("w1:123", 9, {0: with_latencies(3), MINUTE: with_latencies(4000, errors=1)})
    assert Batch.from_bytes(batch.to_bytes()) == batch
    row = Row(with_latencies(3), {"w1": 2})
    assert Row.from_bytes(row.to_bytes()) == row
    with pytest.raises(ValueError):
        Batch.from_bytes(b'{"seq": 1}')


def test_the_sum_of_many_workers_batches_is_the_whole_whatever_their_order():
    """Exactness across workers: three senders' batches in any order add up to the one aggregate."""
    rng = random.Random(3)
    latencies = [rng.uniform(1, 9000) for _ in range(300)]
    deltas = [(f"w{i % 3}", i // 3 + 1, with_latencies(x)) for i, x in enumerate(latencies)]
    rng.shuffle(deltas)
    per_sender: dict[str, list] = {}
    for sender, seq, delta in deltas:
        per_sender.setdefault(sender, []).append((seq, delta))
    row = None
    for sender, items in per_sender.items():  # each sender's batches in its own order, senders interleaved
        for seq, delta in sorted(items, key=lambda item: item[0]):
            row = apply_batch(row, sender=sender, seq=seq, delta=delta) or row
    whole = merge_all([with_latencies(x) for x in latencies])
    assert row.aggregate.latency_counts == whole.latency_counts and row.aggregate.count == 300
