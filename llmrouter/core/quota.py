"""Per-user quotas (F007 "user-based quotas", "emergency bypass"): pure, the clock passed in.

A quota such as 100 a minute (a :class:`~llmrouter.core.bucket.Rate`, parsed
from ``"100/minute"`` at the settings edge) is the user's across the whole group of
workers. Like the providers' rate limits (:mod:`llmrouter.dispatch.limits`), each
worker holds a share of it in proportion to the partitions of the accepted
topics it owns: the answer stage checks it, and those topics are keyed by
request_id, so a user's requests spread evenly over the partitions whatever
upstream keyed them by, and the shares add up to the quota for any number of
workers. A share is a :class:`~llmrouter.core.bucket.TokenBucket` per user:
full, it holds the share of one whole period's count (a user may send its
quota at once), and it refills at the share of the rate.

The cost of sharing: a user close to its quota may be refused by the worker
whose share ran out first while another's is left (request ids spread evenly,
so the shares run out within a few requests of each other); and the buckets
are in memory, so a partition that changes hands starts from a full share at
its new owner (at most one period's count more in that period).

A critical request is neither refused nor counted when ``critical_bypass`` is
on: the emergency path stays open whatever the user sent before. A request
with no user_id is not limited: there is nobody to count it against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llmrouter.core.bucket import BucketConfig, Rate, TokenBucket

MAX_IDLE_BUCKETS = 10_000  # full buckets (users not limited right now) are forgotten past this many


@dataclass(frozen=True, kw_only=True)
class QuotaConfig:
    per_user: Rate | None = None  # 100 a minute; None: users are not limited
    overrides: Mapping[str, Rate | None] = field(default_factory=dict)  # user_id -> its own quota (None: none)
    critical_bypass: bool = True

    def __post_init__(self) -> None:
        for limit in [self.per_user, *self.overrides.values()]:
            if limit is not None and not isinstance(limit, Rate):
                raise TypeError(f"a quota is a Rate (parsed at the settings edge) or None, not {limit!r}")

    def limit_of(self, user_id: str) -> Rate | None:
        return self.overrides[user_id] if user_id in self.overrides else self.per_user

    @property
    def enabled(self) -> bool:
        return self.per_user is not None or any(v is not None for v in self.overrides.values())


class UserQuotas:
    """This worker's share of every user's quota."""

    def __init__(self, config: QuotaConfig) -> None:
        self.config = config
        self._share = 0.0
        self._buckets: dict[str, tuple[Rate, TokenBucket]] = {}  # user_id -> (the limit it was made for, bucket)

    @property
    def share(self) -> float:
        return self._share

    def set_share(self, owned: int, total: int, now_s: float) -> None:
        """This worker now owns ``owned`` of the ``total`` partitions: every user's bucket is resized to match."""
        if total <= 0 or not 0 <= owned <= total:
            raise ValueError(f"a share is owned of total partitions, 0 <= owned <= total: not {owned} of {total}")
        self._share = owned / total
        for user, (limit, bucket) in list(self._buckets.items()):
            if self._share == 0.0:
                del self._buckets[user]
            else:
                self._buckets[user] = (limit, bucket.resized(self._bucket_config(limit), now_s))

    def check(self, user_id: str | None, priority: str, now_s: float) -> str | None:
        """Count one request of ``user_id`` against its quota: None if it may go on, else why not."""
        if user_id is None or (priority == "critical" and self.config.critical_bypass):
            return None
        limit = self.config.limit_of(user_id)
        if limit is None:
            return None
        if self._share == 0.0:
            return f"this worker owns no partition, so no share of user {user_id!r}'s quota of {limit}"
        wait_s = self._bucket(user_id, limit, now_s).take(now_s)
        if wait_s == 0.0:
            return None
        return (f"user {user_id!r} is over its quota of {limit}: the next request is allowed in "
                f"{wait_s:.1f} s (critical requests are {'not ' if self.config.critical_bypass else ''}limited)")

    def snapshot(self, now_s: float) -> dict[str, dict[str, float | str]]:
        """Per user with a bucket here: the quota, this worker's share of it and the requests left now."""
        return {user: {"quota": str(limit), "share": round(self._share, 4), "left": round(bucket.level(now_s), 3)}
                for user, (limit, bucket) in sorted(self._buckets.items())}

    def _bucket(self, user_id: str, limit: Rate, now_s: float) -> TokenBucket:
        entry = self._buckets.get(user_id)
        if entry is not None and entry[0] == limit:
            return entry[1]
        if len(self._buckets) >= MAX_IDLE_BUCKETS:
            self._forget_full(now_s)
        config = self._bucket_config(limit)
        bucket = entry[1].resized(config, now_s) if entry else TokenBucket(config, now_s=now_s)
        self._buckets[user_id] = (limit, bucket)
        return bucket

    def _forget_full(self, now_s: float) -> None:
        """A full bucket is what a new one would be: forgetting it changes nothing but the memory held."""
        for user, (_, bucket) in list(self._buckets.items()):
            if bucket.level(now_s) >= bucket.config.burst:
                del self._buckets[user]

    def _bucket_config(self, limit: Rate) -> BucketConfig:
        burst = limit.count * self._share
        return BucketConfig(rate_per_s=burst / limit.period_s, burst=max(1.0, burst))
