"""A token bucket per provider or per user (specification F006): pure, the clock passed in.

The bucket refills at ``rate`` tokens per second up to ``burst``; a call takes
one token or learns how long until there is one. A provider's "429 Too Many
Requests" shrinks the rate (multiplicative decrease, down to a floor) and
marks the bucket *limited until* now plus the Retry-After (or one token's
time when there is none): until then :meth:`TokenBucket.take` refuses, so
new requests go straight to the next provider instead of waiting in a slot.
At that time one call may go (the retry the provider asked for), and the
rest follow at the shrunk rate.
Afterwards the rate grows back linearly to the configured one over
``recover_s`` (additive increase): AIMD, as TCP backs off.

A limit such as 50 calls an hour (a :class:`Rate`, parsed from ``"50/hour"``
by the settings, never here) is at most 50 calls in any hour when the burst is
small: :meth:`BucketConfig.from_rate` sets the burst to one second's worth of
the rate (at least one token), so a bucket never lets much more than its rate
through in any period.

:meth:`to_dict` and :meth:`from_dict` carry the whole state (for a table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Rate:
    """A limit as numbers: ``count`` calls per ``period_s`` seconds; ``text`` is how it was written (for messages)."""

    count: float
    period_s: float
    text: str = ""

    def __post_init__(self) -> None:
        if self.count < 0 or self.period_s <= 0:
            raise ValueError(f"a rate is a count of 0 or more per a period of more than 0 s, "
                             f"not {self.count:g} per {self.period_s:g} s")

    @property
    def per_s(self) -> float:
        return self.count / self.period_s

    def __str__(self) -> str:
        return self.text or f"{self.count:g} per {self.period_s:g} s"


@dataclass(frozen=True, kw_only=True)
class BucketConfig:
    rate_per_s: float  # the configured rate, tokens per second
    burst: float  # the most tokens held
    decrease: float = 0.5  # a 429 multiplies the current rate by this
    floor_share: float = 0.1  # the rate never shrinks below this share of the configured one
    recover_s: float = 60.0  # from the floor back to the configured rate, linearly, in this long

    def __post_init__(self) -> None:
        checks = [
            (self.rate_per_s > 0, "rate_per_s must be more than 0"),
            (self.burst >= 1, "burst must be at least 1 token"),
            (0 < self.decrease < 1, "decrease must be between 0 and 1"),
            (0 < self.floor_share <= 1, "floor_share must be more than 0 and at most 1"),
            (self.recover_s > 0, "recover_s must be more than 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"token bucket: {message}")

    @classmethod
    def from_rate(cls, rate: Rate, **overrides: float) -> BucketConfig:
        """50 an hour, 1000 a minute ...: that rate, and a burst of one second's worth (at least 1)."""
        return cls(rate_per_s=rate.per_s, burst=max(1.0, rate.per_s), **overrides)


class TokenBucket:
    def __init__(self, config: BucketConfig, *, now_s: float) -> None:
        self.config = config
        self.tokens = config.burst
        self.rate_per_s = config.rate_per_s
        self.limited_until_s: float | None = None  # refuse until then (a 429)
        self.updated_s = now_s

    def take(self, now_s: float, n: float = 1.0) -> float:
        """Take ``n`` tokens and return 0, or take none and return the seconds until they would be there."""
        self._refill(now_s)
        if self.limited_until_s is not None and now_s < self.limited_until_s:
            return self.limited_until_s - now_s
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate_per_s

    def throttled(self, now_s: float, retry_after_s: float | None = None) -> float:
        """The provider said 429: shrink the rate, empty the bucket, refuse until the retry time. Returns it."""
        self._refill(now_s)
        floor = self.config.rate_per_s * self.config.floor_share
        self.rate_per_s = max(floor, self.rate_per_s * self.config.decrease)
        self.tokens = 1.0  # "retry after T": one call may go at T, the rest come at the shrunk rate
        wait = retry_after_s if retry_after_s is not None and retry_after_s > 0 else 1.0 / self.rate_per_s
        self.limited_until_s = max(self.limited_until_s or now_s, now_s + wait)
        return self.limited_until_s

    def hold_until(self, until_s: float) -> None:
        """Refuse until ``until_s`` (another worker's 429 told it): the rate is not shrunk here."""
        self.limited_until_s = max(self.limited_until_s or until_s, until_s)

    def resized(self, config: BucketConfig, now_s: float) -> TokenBucket:
        """This bucket under a new configured rate (this worker's share changed): the tokens held, the
        shrunk share of the rate and the limited-until carry over, the tokens capped at the new burst."""
        self._refill(now_s)
        bucket = TokenBucket(config, now_s=now_s)
        bucket.tokens = min(self.tokens, config.burst)
        bucket.rate_per_s = config.rate_per_s * self.rate_per_s / self.config.rate_per_s
        bucket.limited_until_s = self.limited_until_s
        return bucket

    def level(self, now_s: float) -> float:
        """Tokens available now (for a gauge)."""
        self._refill(now_s)
        return self.tokens

    def _refill(self, now_s: float) -> None:
        start = self.updated_s
        if now_s <= start:
            return
        self.updated_s = now_s
        target = self.config.rate_per_s
        step = target * (1.0 - self.config.floor_share) / self.config.recover_s  # additive increase, per second

        def rate_at(t: float) -> float:
            return min(target, self.rate_per_s + step * (t - start))

        accrue_from = max(start, self.limited_until_s if self.limited_until_s is not None else start)
        if now_s > accrue_from:  # nothing accrues while the provider told us to wait
            # the rate rises linearly (then stays at the target): the mean of its ends never exceeds the target
            refill = (rate_at(accrue_from) + rate_at(now_s)) / 2.0 * (now_s - accrue_from)
            self.tokens = min(self.config.burst, self.tokens + refill)
        self.rate_per_s = rate_at(now_s)

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "rate_per_s": self.rate_per_s, "limited_until_s": self.limited_until_s,
                "updated_s": self.updated_s}

    @classmethod
    def from_dict(cls, config: BucketConfig, data: dict[str, Any]) -> TokenBucket:
        bucket = cls(config, now_s=float(data["updated_s"]))
        bucket.tokens = float(data["tokens"])
        bucket.rate_per_s = float(data["rate_per_s"])
        limited = data["limited_until_s"]
        bucket.limited_until_s = float(limited) if limited is not None else None
        return bucket
