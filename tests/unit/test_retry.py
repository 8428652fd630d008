"""Retry policy: capped exponential backoff with full jitter, Retry-After honoured,
moving on when waiting is not worth it."""

from __future__ import annotations

import random

import pytest

from llmrouter.errors import AuthError, ProviderUnavailable, RateLimited
from llmrouter.core.retry import RetryPolicy

RNG = random.Random(3)


def test_backoff_grows_exponentially_within_the_cap():
    """The n-th retry waits uniformly in [0, min(cap, base * 2**n)]."""
    policy = RetryPolicy(attempts=10, base_s=0.1, cap_s=1.0)
    for retry, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        waits = [policy.backoff_s(retry, RNG) for _ in range(200)]
        assert 0 <= min(waits) and max(waits) <= ceiling and max(waits) > ceiling * 0.8


def test_a_retriable_error_is_retried_until_the_attempts_are_spent():
    """attempts=2: the first and second retries get a wait, the third gets None."""
    policy, error = RetryPolicy(attempts=2), ProviderUnavailable("503")
    assert policy.wait_before_retry(error, retries_done=0, time_left_s=10, rng=RNG) is not None
    assert policy.wait_before_retry(error, retries_done=1, time_left_s=10, rng=RNG) is not None
    assert policy.wait_before_retry(error, retries_done=2, time_left_s=10, rng=RNG) is None


def test_an_error_a_retry_cannot_help_is_never_retried():
    """Auth errors are not retriable."""
    assert RetryPolicy(attempts=5).wait_before_retry(AuthError("401"), retries_done=0, time_left_s=10,
                                                     rng=RNG) is None


def test_retry_after_sets_the_least_wait_and_a_long_one_means_move_on():
    """429 with Retry-After 1.5 s waits 1.5 s; 30 s is over max_wait_s; either over the deadline moves on."""
    policy = RetryPolicy(attempts=3, max_wait_s=2.0)
    assert policy.wait_before_retry(RateLimited("429", retry_after_s=1.5), retries_done=0, time_left_s=10,
                                    rng=RNG) == 1.5
    assert policy.wait_before_retry(RateLimited("429", retry_after_s=30), retries_done=0, time_left_s=60,
                                    rng=RNG) is None
    assert policy.wait_before_retry(RateLimited("429", retry_after_s=1.5), retries_done=0, time_left_s=1.0,
                                    rng=RNG) is None


def test_an_overloaded_provider_asking_for_a_long_wait_is_left_for_the_next_one():
    """Hugging Face's 503 'model loading, estimated_time 20' is not retried: moving on is better."""
    loading = ProviderUnavailable("503 model loading", retry_after_s=20.0)
    assert RetryPolicy(attempts=3).wait_before_retry(loading, retries_done=0, time_left_s=60, rng=RNG) is None


def test_a_policy_with_nonsense_values_is_refused():
    """Negative attempts or a base over the cap are configuration errors."""
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=-1)
    with pytest.raises(ValueError, match="cap_s"):
        RetryPolicy(base_s=5, cap_s=1)
