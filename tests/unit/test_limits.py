"""Rate limits as shares of each provider's limit, on a clock the tests move."""

from __future__ import annotations

import pytest

from llmrouter.dispatch.limits import Adapt, RateLimits

LIMITS = {"together": "600/minute", "hf": "60/minute", "local": None}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock, **kwargs) -> RateLimits:
    return RateLimits(LIMITS.get, adapt=Adapt(decrease=0.5, floor_share=0.1, recover_s=10), clock=clock, **kwargs)


def calls_in(limiter: RateLimits, clock: Clock, provider: str, seconds: float, step_s: float = 0.01) -> int:
    """Greedy calls every step for ``seconds``: how many the limiter let through."""
    let_through = 0
    end = clock.now + seconds
    while clock.now < end:
        let_through += limiter.take(provider) is None
        clock.now += step_s
    return let_through


def test_two_workers_with_half_the_partitions_each_stay_within_the_limit_together():
    """600/minute over 4 partitions, 2 each: each worker gets 5/s and one second's burst, 600 in a minute in all."""
    clock_a, clock_b = Clock(), Clock()
    a, b = limits(clock_a), limits(clock_b)
    a.set_share(2, 4)
    b.set_share(2, 4)
    total = calls_in(a, clock_a, "together", 60) + calls_in(b, clock_b, "together", 60)
    assert 600 <= total <= 600 + 2 * 5 + 2  # the limit, plus each worker's one-second burst (and rounding)


def test_a_worker_with_no_partition_calls_no_limited_provider():
    """Before its first assignment (or during a rebalance) a worker has no share; unlimited providers are free."""
    limiter = limits(Clock())
    assert "owns no partition" in limiter.take("together")
    assert limiter.take("local") is None and limiter.take("unknown") is None


def test_a_rebalance_resizes_the_share_and_keeps_no_more_tokens_than_the_new_burst():
    """From all 4 partitions (10/s, burst 10) to 1 (2.5/s, burst 2.5): at most 2 calls at once, then 2.5/s."""
    clock = Clock()
    limiter = limits(clock)
    limiter.set_share(4, 4)
    assert limiter.take("together") is None
    limiter.set_share(1, 4)
    assert [limiter.take("together") is None for _ in range(3)] == [True, True, False]
    assert limiter.snapshot()["together"]["share_per_s"] == pytest.approx(2.5)


def test_a_429_holds_the_provider_off_for_its_retry_after_then_it_recovers_at_a_smaller_rate():
    """Retry-After 2 s: refused for 2 s with the reason, the rate halved, and every other worker told."""
    clock, told = Clock(), []
    limiter = limits(clock, on_throttled=lambda provider, wait: told.append((provider, wait)))
    limiter.set_share(1, 1)
    limiter.throttled("together", 2.0)
    assert told == [("together", 2.0)]
    assert "asked us to wait (429)" in limiter.take("together")
    clock.now = 2.5
    assert limiter.take("together") is None
    assert limiter.snapshot()["together"]["rate_per_s"] < 10.0


def test_another_workers_429_holds_this_worker_off_too():
    """hold(): no call to the provider until then, whether or not this worker had a bucket for it yet."""
    clock = Clock()
    limiter = limits(clock)
    limiter.set_share(1, 2)
    limiter.hold("hf", 3.0)
    assert limiter.take("hf") is not None and limiter.held_for("hf") == pytest.approx(3.0)
    clock.now = 3.1
    assert limiter.take("hf") is None


def test_turned_off_no_limit_is_enforced():
    limiter = limits(Clock(), enabled=False)
    assert all(limiter.take("hf") is None for _ in range(100))


def test_a_share_must_be_some_of_the_partitions():
    with pytest.raises(ValueError, match="0 <= owned <= total"):
        limits(Clock()).set_share(5, 4)
