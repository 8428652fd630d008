"""Per-user quotas as shares held by the workers (llmrouter/core/quota.py), on a clock the tests move."""

from __future__ import annotations

import pytest

from llmrouter.config.guards import QuotaSettings
from llmrouter.core.bucket import Rate
from llmrouter.core.quota import MAX_IDLE_BUCKETS, QuotaConfig, UserQuotas


def quotas(owned: int = 4, total: int = 4, **settings) -> UserQuotas:
    """Quotas as the settings write them (``per_user="10/minute"``), parsed at the edge as the app does."""
    q = UserQuotas(QuotaSettings(**settings).to_config())
    q.set_share(owned, total, now_s=0.0)
    return q


def allowed(q: UserQuotas, user: str | None, n: int, *, priority: str = "normal", at_s: float = 0.0) -> int:
    return sum(q.check(user, priority, at_s) is None for _ in range(n))


def test_a_user_may_send_its_quota_at_once_and_then_no_more_until_it_refills():
    """'10/minute' on the only worker: 10 at once pass, the 11th is refused; a minute on, 10 more pass."""
    q = quotas(per_user="10/minute")
    assert allowed(q, "alice", 15) == 10
    reason = q.check("alice", "normal", 1.0)
    assert reason is not None and "over its quota of 10/minute" in reason
    assert allowed(q, "alice", 15, at_s=61.0) == 10


def test_each_user_has_a_quota_of_its_own():
    """alice spending hers leaves bob's whole."""
    q = quotas(per_user="3/hour")
    assert allowed(q, "alice", 5) == 3
    assert allowed(q, "bob", 5) == 3


def test_two_workers_with_half_the_partitions_each_let_the_quota_through_together_not_twice():
    """'100/minute' over 4 partitions, 2 each: 50 each at once and 50 each per minute after, 100 in all."""
    a, b = quotas(2, 4, per_user="100/minute"), quotas(2, 4, per_user="100/minute")
    assert allowed(a, "alice", 80) + allowed(b, "alice", 80) == 100
    assert allowed(a, "alice", 80, at_s=60.0) + allowed(b, "alice", 80, at_s=60.0) == 100


def test_critical_requests_bypass_the_quota_and_do_not_use_it_up():
    """With critical_bypass, alice's critical requests pass after her quota is spent, and spend none of it."""
    q = quotas(per_user="2/hour", critical_bypass=True)
    assert allowed(q, "alice", 5, priority="critical") == 5
    assert allowed(q, "alice", 5) == 2
    assert allowed(q, "alice", 5, priority="critical") == 5


def test_without_the_bypass_critical_requests_count_like_any_other():
    """critical_bypass off: the quota is the quota, whatever the priority."""
    q = quotas(per_user="2/hour", critical_bypass=False)
    assert allowed(q, "alice", 5, priority="critical") == 2


def test_an_override_gives_a_user_its_own_quota_or_none():
    """batch gets 5/hour, ops no quota at all, everyone else the default 1/hour."""
    q = quotas(per_user="1/hour", overrides={"batch": "5/hour", "ops": None})
    assert allowed(q, "batch", 10) == 5
    assert allowed(q, "ops", 100) == 100
    assert allowed(q, "carol", 10) == 1


def test_requests_with_no_user_and_settings_with_no_quota_are_not_limited():
    """No user_id: nobody to count against; per_user None: quotas are off."""
    assert allowed(quotas(per_user="1/hour"), None, 50) == 50
    off = quotas()
    assert not off.config.enabled and allowed(off, "alice", 50) == 50


def test_a_worker_that_owns_no_partition_has_no_share_to_give():
    """During a rebalance (nothing owned) a request is refused with the reason, never let through on no share."""
    q = quotas(0, 4, per_user="100/minute")
    reason = q.check("alice", "normal", 0.0)
    assert reason is not None and "owns no partition" in reason


def test_a_share_that_shrinks_keeps_at_most_the_new_share():
    """Owning 4 then 1 of 4 partitions: alice's full bucket of 8 is cut to 2."""
    q = quotas(per_user="8/hour")
    assert q.snapshot(0.0) == {}
    q.check("alice", "normal", 0.0)
    q.set_share(1, 4, now_s=0.0)
    assert q.snapshot(0.0)["alice"]["left"] == 2.0
    assert allowed(q, "alice", 10) == 2


def test_full_buckets_are_forgotten_when_there_are_too_many():
    """Past MAX_IDLE_BUCKETS users, those whose bucket has refilled are dropped (a new bucket is the same)."""
    q = quotas(per_user="1/second")
    for i in range(MAX_IDLE_BUCKETS):
        q.check(f"user-{i}", "normal", 0.0)
    assert len(q.snapshot(0.0)) == MAX_IDLE_BUCKETS
    q.check("late", "normal", 5.0)
    assert list(q.snapshot(5.0)) == ["late"]


def test_a_quota_that_is_not_a_rate_is_refused_in_its_own_words():
    """'100 per minute' is not how a rate is written: refused by the settings, the user named in the path."""
    with pytest.raises(ValueError, match="not a rate"):
        QuotaSettings(per_user="100 per minute")
    with pytest.raises(ValueError, match=r"overrides\.batch(.|\n)*not a rate"):
        QuotaSettings(overrides={"batch": "5 an hour"})


def test_core_takes_quotas_as_numbers_not_text():
    """QuotaConfig is handed parsed Rates; a string reaching core is a wiring mistake, refused at once."""
    config = QuotaConfig(per_user=Rate(count=10, period_s=60, text="10/minute"))
    assert config.limit_of("alice") == Rate(count=10, period_s=60, text="10/minute")
    with pytest.raises(TypeError, match="parsed at the settings edge"):
        QuotaConfig(per_user="10/minute")
