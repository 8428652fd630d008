"""The dynamic batching policy, rule by rule, with time passed in (no clock, no sleep, no model)."""

from __future__ import annotations

import pytest

from llmrouter.localmodel.batching import (ArrivalRate, BatchPolicy, BatchPolicyConfig, Decision, Queued,
                                           StepCost)
from llmrouter.localmodel.memory import MemoryBudget, ModelDims, estimate_memory_bytes


def q(*, prompt: int = 10, new: int = 10, at: float = 0.0, deadline: float = 100.0, priority: int = 2) -> Queued:
    return Queued(prompt_tokens=prompt, max_tokens=new, arrived_s=at, deadline_s=deadline, priority=priority)


def policy(mode: str = "balanced", *, max_batch: int = 4, max_wait_s: float | None = None, max_queue: int = 16,
           workers: int = 1, memory: MemoryBudget | None = None) -> BatchPolicy:
    return BatchPolicy(BatchPolicyConfig(mode=mode, max_batch=max_batch, max_wait_s=max_wait_s,
                                         max_queue=max_queue, workers=workers), memory=memory)


def measured(*, prefill_s_per_token: float = 0.001, step_s: float = 0.01, rows: int = 1) -> StepCost:
    """A cost model that has seen one prefill and one decode step."""
    cost = StepCost()
    cost.observe_prefill(1000, prefill_s_per_token * 1000)
    cost.observe_step(rows, step_s)
    return cost


UNMEASURED = StepCost()


# -- arrival rate ---------------------------------------------------------------------------------

def test_one_arrival_says_nothing_about_the_rate() -> None:
    """A single arrival gives a rate of 0, so an idle model never waits for a second one."""
    rate = ArrivalRate()
    rate.record(10.0)
    assert rate.per_s(10.0) == 0.0 and rate.per_s(10.5) == 0.0


def test_rate_counts_arrivals_since_the_oldest_and_decays_without_new_ones() -> None:
    """Five arrivals 10 ms apart are 100/s at the last one, and the estimate falls as time passes."""
    rate = ArrivalRate(horizon_s=2.0)
    for i in range(5):
        rate.record(1.0 + i * 0.01)
    assert rate.per_s(1.04) == pytest.approx(100.0)
    assert rate.per_s(1.4) == pytest.approx(10.0)


def test_rate_forgets_arrivals_older_than_the_horizon() -> None:
    """Arrivals older than the horizon no longer count."""
    rate = ArrivalRate(horizon_s=1.0)
    for t in (0.0, 0.1, 0.2):
        rate.record(t)
    assert rate.per_s(0.2) == pytest.approx(10.0)
    assert rate.per_s(1.15) == 0.0  # only 0.2 is left: one arrival, no rate


# -- step cost ------------------------------------------------------------------------------------

def test_batch_estimate_is_padded_prefill_plus_decode_steps() -> None:
    """rows x longest prompt x prefill cost per token, plus the longest answer's steps at that batch size."""
    cost = measured(prefill_s_per_token=0.001, step_s=0.02, rows=2)
    batch = [q(prompt=100, new=10), q(prompt=50, new=30)]
    assert cost.batch_s(batch) == pytest.approx(2 * 100 * 0.001 + 30 * 0.02)
    assert UNMEASURED.batch_s(batch) is None and not UNMEASURED.known


def test_step_cost_of_an_unmeasured_batch_size_comes_from_the_nearest_measured_one() -> None:
    """More rows than measured scale the step cost up linearly; fewer keep it."""
    cost = measured(step_s=0.01, rows=2)
    assert cost.step_s(2) == 0.01
    assert cost.step_s(8) == pytest.approx(0.04)
    assert cost.step_s(1) == 0.01


def test_measurements_are_blended_and_early_stops_shorten_estimates() -> None:
    """A new step time moves the estimate by the weight; answers that stop early lower the steps counted."""
    cost = measured(step_s=0.01, rows=1)
    cost.observe_step(1, 0.02)
    assert cost.step_s(1) == pytest.approx(0.012)
    for _ in range(30):
        cost.observe_usage(100, 25)
    assert cost.used_share == pytest.approx(0.25, abs=0.01)
    assert cost.batch_s([q(prompt=0, new=100)]) == pytest.approx(26 * 0.012)


# -- memory ---------------------------------------------------------------------------------------

DIMS = ModelDims(layers=22, kv_heads=4, head_dim=64, vocab_size=32000)
WEIGHTS = 1_100_000_000
LIMIT = 1_610_612_736


def test_memory_budget_agrees_with_the_load_time_estimate() -> None:
    """The per-row split adds up to estimate_memory_bytes for a batch at the full context."""
    budget = MemoryBudget.for_model(DIMS, weights=WEIGHTS, limit_bytes=LIMIT)
    for rows in (1, 4):
        assert budget.batch_bytes(rows, 2048) == estimate_memory_bytes(DIMS, weights=WEIGHTS, batch_size=rows,
                                                                         context_tokens=2048)


def test_memory_caps_the_batch_by_the_padded_length_of_its_rows() -> None:
    """At TinyLlama's shape under 2 GiB, eight 200-token sequences fit, eight 2000-token ones do not."""
    budget = MemoryBudget.for_model(DIMS, weights=WEIGHTS, limit_bytes=2 * 2**30)
    rules = policy(max_batch=8, memory=budget)
    assert rules.cap([q(prompt=100, new=100)] * 8) == 8
    long_rows = [q(prompt=1500, new=500)] * 8
    assert 1 < rules.cap(long_rows) < 8
    assert budget.fits(rules.cap(long_rows), 2000) and not budget.fits(rules.cap(long_rows) + 1, 2000)
    decision = rules.next_batch(long_rows, now_s=0.0, rate_per_s=0.0, cost=UNMEASURED)
    assert decision == Decision(rules.cap(long_rows), 0.0, "memory")


def test_one_row_always_runs_even_over_the_budget() -> None:
    """The engine refuses to load a model whose single full-context row does not fit, so one row is always allowed."""
    budget = MemoryBudget(limit_bytes=1, fixed_bytes=10, row_bytes_per_token=1, row_logits_bytes=1)
    assert policy(max_batch=4, memory=budget).cap([q(), q()]) == 1


# -- next batch -----------------------------------------------------------------------------------

def test_nothing_queued_means_nothing_to_do() -> None:
    assert policy().next_batch([], now_s=0.0, rate_per_s=100.0, cost=measured()) == Decision(0, 0.0, "empty")


@pytest.mark.parametrize("mode", ["latency", "balanced", "throughput"])
def test_a_full_batch_runs_at_once_in_every_mode(mode: str) -> None:
    """As many queued as max_batch: run them now; extra requests wait for the next batch."""
    queue = [q(at=0.0) for _ in range(6)]
    decision = policy(mode, max_batch=4).next_batch(queue, now_s=0.0, rate_per_s=1000.0, cost=measured())
    assert decision == Decision(4, 0.0, "full")


def test_latency_mode_never_waits() -> None:
    """Latency mode runs what is queued at once, however fast requests arrive and whatever max_wait says."""
    decision = policy("latency", max_wait_s=1.0).next_batch([q()], now_s=0.0, rate_per_s=1000.0, cost=measured())
    assert decision == Decision(1, 0.0, "latency")
    assert BatchPolicyConfig(mode="latency", max_wait_s=1.0).wait_s == 0.0


@pytest.mark.parametrize("mode", ["balanced", "throughput"])
def test_no_mode_waits_with_a_critical_request_queued(mode: str) -> None:
    """A critical request (priority 0) in the queue makes the batch run now, with what is queued."""
    queue = [q(priority=2), q(priority=0)]
    decision = policy(mode, max_wait_s=1.0).next_batch(queue, now_s=0.0, rate_per_s=1000.0, cost=measured())
    assert decision == Decision(2, 0.0, "critical")


def test_throughput_mode_waits_for_more_until_max_wait_after_the_oldest_arrival() -> None:
    """Throughput mode waits for a full batch even at no load, but never past max_wait from the first arrival."""
    rules = policy("throughput", max_wait_s=0.2)
    queue = [q(at=1.0), q(at=1.05)]
    assert rules.next_batch(queue, now_s=1.05, rate_per_s=0.0, cost=UNMEASURED) == Decision(0, pytest.approx(0.15), "waited")
    assert rules.next_batch(queue, now_s=1.21, rate_per_s=0.0, cost=UNMEASURED) == Decision(2, 0.0, "waited")


def test_default_waits_follow_the_mode() -> None:
    """latency 0, balanced 50 ms, throughput 200 ms unless max_wait_s says otherwise."""
    assert [BatchPolicyConfig(mode=m).wait_s for m in ("latency", "balanced", "throughput")] == [0.0, 0.05, 0.2]
    assert BatchPolicyConfig(mode="throughput", max_wait_s=0.5).wait_s == 0.5


def test_waiting_stops_early_enough_for_the_earliest_deadline() -> None:
    """The wait ends when the full batch would only just finish by the earliest deadline; past that, run now."""
    rules = policy("throughput", max_wait_s=5.0)
    cost = measured(prefill_s_per_token=0.0, step_s=0.01, rows=4)  # 10 steps: 0.1 s
    queue = [q(at=0.0, deadline=10.0), q(at=0.0, deadline=1.0)]
    assert rules.next_batch(queue, now_s=0.0, rate_per_s=0.0, cost=cost) == Decision(0, pytest.approx(0.9), "deadline")
    assert rules.next_batch(queue, now_s=0.95, rate_per_s=0.0, cost=cost) == Decision(2, 0.0, "deadline")


def test_balanced_mode_does_not_wait_before_the_cost_is_measured() -> None:
    """Without a measured batch cost there is no telling whether a wait pays: run now."""
    decision = policy("balanced").next_batch([q()], now_s=0.0, rate_per_s=1000.0, cost=UNMEASURED)
    assert decision == Decision(1, 0.0, "unmeasured")


def test_balanced_mode_does_not_wait_at_idle_or_low_load() -> None:
    """No arrival rate, or less than one arrival expected within the wait: run now."""
    rules = policy("balanced", max_wait_s=0.05)
    cost = measured(step_s=0.1, rows=4)  # a batch of 10 steps takes 1 s: waiting would be cheap
    assert rules.next_batch([q()], now_s=0.0, rate_per_s=0.0, cost=cost) == Decision(1, 0.0, "low_load")
    assert rules.next_batch([q()], now_s=0.0, rate_per_s=10.0, cost=cost) == Decision(1, 0.0, "low_load")


def test_balanced_mode_waits_as_long_as_the_batch_takes_to_fill_at_high_load() -> None:
    """At 200 requests/s three more rows come in 15 ms: wait that, not the whole max_wait."""
    rules = policy("balanced", max_batch=4, max_wait_s=0.05)
    cost = measured(step_s=0.1, rows=4)
    assert rules.next_batch([q()], now_s=0.0, rate_per_s=200.0, cost=cost) == Decision(0, pytest.approx(0.015), "filling")


def test_balanced_mode_waits_at_most_a_quarter_of_the_batch_run_time() -> None:
    """On a model that answers in 20 ms, a balanced wait is at most 5 ms, however long max_wait is."""
    rules = policy("balanced", max_batch=8, max_wait_s=0.05)
    cost = measured(prefill_s_per_token=0.0, step_s=0.002, rows=8)  # 10 steps: 20 ms
    decision = rules.next_batch([q()], now_s=0.0, rate_per_s=1000.0, cost=cost)
    assert decision == Decision(0, pytest.approx(0.005), "short_work")


def test_config_is_validated_with_sentences() -> None:
    with pytest.raises(ValueError, match="batching must be one of latency, balanced, throughput"):
        BatchPolicyConfig(mode="fast")
    with pytest.raises(ValueError, match="max_batch"):
        BatchPolicyConfig(max_batch=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        BatchPolicyConfig(max_wait_s=-1)


# -- admission ------------------------------------------------------------------------------------

def test_a_full_queue_refuses_new_requests() -> None:
    """max_queue waiting: the next request is refused at once, with the numbers in the reason."""
    refusal = policy(max_queue=2).admit([q(), q()], q(), now_s=0.0, busy_until_s=[5.0], cost=UNMEASURED)
    assert refusal is not None and refusal.kind == "queue_full"
    assert "queue is full (2 waiting, max_queue 2)" in refusal.reason
    assert policy(max_queue=3).admit([q(), q()], q(), now_s=0.0, busy_until_s=[5.0], cost=UNMEASURED) is None


def test_an_idle_worker_takes_a_batch_beyond_max_queue() -> None:
    """max_queue counts requests that must wait for a busy model: with a worker idle, max_queue 0 still
    admits as many as one batch holds."""
    rules = policy(max_batch=2, max_queue=0)
    assert rules.admit([], q(), now_s=0.0, busy_until_s=[], cost=UNMEASURED) is None
    assert rules.admit([q()], q(), now_s=0.0, busy_until_s=[], cost=UNMEASURED) is None
    assert rules.admit([q(), q()], q(), now_s=0.0, busy_until_s=[], cost=UNMEASURED) is not None
    assert rules.admit([], q(), now_s=0.0, busy_until_s=[1.0], cost=UNMEASURED) is not None


def test_deadlines_are_not_judged_before_the_cost_is_measured() -> None:
    """Without a measured cost only max_queue refuses."""
    assert policy().admit([q()] * 8, q(deadline=0.001), now_s=0.0, busy_until_s=[100.0], cost=UNMEASURED) is None


def test_a_request_that_cannot_finish_before_its_deadline_behind_the_queue_is_refused() -> None:
    """1 s left on the running batch, one full batch of 4 ahead (0.5 s each): a request with 1.5 s left
    would end at 2.0 s; refused. With 2.5 s left it is admitted."""
    rules = policy(max_batch=4)
    cost = measured(prefill_s_per_token=0.0, step_s=0.05, rows=4)  # 10 steps: 0.5 s
    queue = [q() for _ in range(4)]
    refusal = rules.admit(queue, q(deadline=1.5), now_s=0.0, busy_until_s=[1.0], cost=cost)
    assert refusal is not None and refusal.kind == "deadline"
    assert "1.50s of work ahead" in refusal.reason and "1.50s left" in refusal.reason
    assert rules.admit(queue, q(deadline=2.5), now_s=0.0, busy_until_s=[1.0], cost=cost) is None


def test_an_idle_model_admits_even_a_request_longer_than_its_deadline() -> None:
    """Nothing ahead: the request starts at once; its own length is for its timeout to judge."""
    cost = measured(prefill_s_per_token=0.0, step_s=1.0)
    assert policy().admit([], q(new=100, deadline=1.0), now_s=0.0, busy_until_s=[], cost=cost) is None


def test_a_more_urgent_request_is_judged_by_the_requests_ahead_of_it_only() -> None:
    """A critical request does not wait behind queued normal ones, so it is admitted where a normal one is not."""
    rules = policy(max_batch=1)
    cost = measured(prefill_s_per_token=0.0, step_s=0.1)  # 1 s per request
    queue = [q(priority=2) for _ in range(5)]
    assert rules.admit(queue, q(priority=2, deadline=3.0), now_s=0.0, busy_until_s=[1.0], cost=cost) is not None
    assert rules.admit(queue, q(priority=0, deadline=3.0), now_s=0.0, busy_until_s=[1.0], cost=cost) is None


def test_more_workers_share_the_queue_ahead() -> None:
    """Four 1 s requests ahead of a fifth: it ends at 5.5 s on one worker, 3.5 s on two; a 4 s deadline
    fits only the second."""
    cost = measured(prefill_s_per_token=0.0, step_s=0.1)
    queue = [q() for _ in range(4)]
    new = q(deadline=4.0)
    assert policy(max_batch=1, workers=1).admit(queue, new, now_s=0.0, busy_until_s=[0.5], cost=cost) is not None
    assert policy(max_batch=1, workers=2).admit(queue, new, now_s=0.0, busy_until_s=[0.5, 0.5], cost=cost) is None
