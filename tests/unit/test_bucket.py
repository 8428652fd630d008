"""The token bucket with AIMD on 429, on a clock the tests move."""

from __future__ import annotations

import random
from collections import deque

import pytest

from llmrouter.core.bucket import BucketConfig, Rate, TokenBucket

TEN_PER_S = BucketConfig(rate_per_s=10, burst=5, decrease=0.5, floor_share=0.1, recover_s=9)


def test_a_full_bucket_lets_its_burst_through_then_says_how_long_until_the_next_token():
    bucket = TokenBucket(TEN_PER_S, now_s=0)
    assert [bucket.take(0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0  # one token came back in 0.1 s


PER_MINUTE = Rate(count=1000, period_s=60, text="1000/minute")


def test_a_rate_gives_its_rate_and_a_burst_of_one_seconds_worth():
    """1000 a minute: 16.7 a second, burst 16.7; 50 an hour: a burst of one token, never less."""
    per_minute = BucketConfig.from_rate(PER_MINUTE)
    assert per_minute.rate_per_s == pytest.approx(1000 / 60) and per_minute.burst == pytest.approx(1000 / 60)
    per_hour = BucketConfig.from_rate(Rate(count=50, period_s=3600))
    assert per_hour.rate_per_s == pytest.approx(50 / 3600) and per_hour.burst == 1.0


def test_a_rate_with_a_negative_count_or_no_period_is_refused_in_a_sentence():
    """Core gets numbers, not text: the numbers are still checked where the Rate is made."""
    with pytest.raises(ValueError, match="a rate is a count of 0 or more"):
        Rate(count=-1, period_s=60)
    with pytest.raises(ValueError, match="per a period of more than 0 s"):
        Rate(count=10, period_s=0)


def test_a_rate_reads_as_it_was_written_or_as_its_numbers():
    """Messages and views show the operator's own words when there are some."""
    assert str(PER_MINUTE) == "1000/minute" and str(Rate(count=2.5, period_s=1)) == "2.5 per 1 s"


def test_no_minute_ever_sees_more_than_the_limit_and_its_burst():
    """A caller taking greedily at random moments for an hour against "1000/minute": every sliding
    60 s holds at most 1,000 calls plus the burst (17), and the hour as a whole close to 60,000."""
    rng = random.Random(3)
    bucket = TokenBucket(BucketConfig.from_rate(PER_MINUTE), now_s=0)
    now, taken, window = 0.0, 0, deque()
    most = 0
    while now < 3600:
        now += rng.expovariate(40)  # 40 attempts a second, 2.4x the rate
        if bucket.take(now) == 0.0:
            taken += 1
            window.append(now)
            while window[0] <= now - 60:
                window.popleft()
            most = max(most, len(window))
    assert most <= 1000 + 17
    assert 59_000 <= taken <= 60_017


def test_a_429_refuses_until_the_retry_after_halves_the_rate_and_it_recovers_linearly():
    bucket = TokenBucket(TEN_PER_S, now_s=0)
    until = bucket.throttled(1.0, retry_after_s=2.0)
    assert until == 3.0 and bucket.rate_per_s == 5.0
    assert bucket.take(1.5) == pytest.approx(1.5)  # refused: limited for 1.5 s more
    assert bucket.level(3.0) == 1.0  # nothing accrued while limited: the one call the Retry-After allows
    assert bucket.take(3.0) == 0.0 and bucket.take(3.0) > 0
    assert bucket.rate_per_s == pytest.approx(5 + 2 * 1.0)  # recovering at (10 - 1) / 9 = 1 token/s per s
    bucket.level(20.0)
    assert bucket.rate_per_s == 10.0 and bucket.tokens == 5.0  # back to the configured rate, bucket full


def test_repeated_429s_never_take_the_rate_below_its_floor():
    bucket = TokenBucket(TEN_PER_S, now_s=0)
    for _ in range(10):
        bucket.throttled(0.0)
    assert bucket.rate_per_s == pytest.approx(1.0)
    assert bucket.limited_until_s == pytest.approx(1.0)  # no Retry-After: one token's time at the new rate


def test_the_state_survives_a_round_trip_through_a_dict():
    bucket = TokenBucket(TEN_PER_S, now_s=0)
    bucket.take(0)
    bucket.throttled(0.5, retry_after_s=1)
    copy = TokenBucket.from_dict(TEN_PER_S, bucket.to_dict())
    assert copy.to_dict() == bucket.to_dict()
    assert [copy.take(t) for t in (1.0, 1.6, 2.5)] == [bucket.take(t) for t in (1.0, 1.6, 2.5)]
    assert TokenBucket.from_dict(TEN_PER_S, TokenBucket(TEN_PER_S, now_s=0).to_dict()).limited_until_s is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"rate_per_s": 0, "burst": 1}, "rate_per_s must be more than 0"),
    ({"rate_per_s": 1, "burst": 0.5}, "burst must be at least 1 token"),
    ({"rate_per_s": 1, "burst": 1, "decrease": 1}, "decrease must be between 0 and 1"),
])
def test_a_bad_config_is_refused_with_a_sentence(fields, message):
    with pytest.raises(ValueError, match=message):
        BucketConfig(**fields)
