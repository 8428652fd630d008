"""Each provider's rate limit (F006), held by the workers as shares that add up to it.

A limit such as ``together: "1000/minute"`` is the provider's, not a worker's.
Each worker of the group holds a share of it in proportion to the partitions
of the accepted topics it owns (DESIGN.md: "an explicit share per
partition"): a worker with 2 of 4 partitions may call the provider 500 times a
minute. The shares are set again at every rebalance, from the new assignment,
so they add up to the limit whatever the number of workers; a worker with no
partition has no share and calls no provider. Requests are keyed by
request_id, so the partitions, and the shares, carry about the same load.

Each share is a :class:`~llmrouter.core.bucket.TokenBucket` (in memory: a
worker's tokens are worth nothing to the next owner, which starts from a full
bucket of its own share; the most that lets through in any period is the
limit plus one second's worth of each worker's share). A call the bucket
refuses is skipped with ``rate_limited`` and the request goes straight on to
the next provider; a retry takes a token like any call.

A provider's 429 shrinks this worker's rate (AIMD, in the bucket) and holds
the bucket until the Retry-After; ``on_throttled`` passes that time on so every
worker holds off too (:mod:`llmrouter.dispatch.fleet`), and :meth:`hold` is how a
worker hears of another's 429.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmrouter.core.bucket import BucketConfig, TokenBucket
from llmrouter.config.types import parse_rate


@dataclass(frozen=True, kw_only=True)
class Adapt:
    """How a 429 shrinks a share and how it grows back (see :class:`BucketConfig`)."""

    decrease: float = 0.5
    floor_share: float = 0.1
    recover_s: float = 60.0


class RateLimits:
    """The dispatcher's :class:`~llmrouter.dispatch.dispatcher.Limiter`: one bucket per provider that has a limit."""

    def __init__(self, limit_of: Callable[[str], str | None], *, adapt: Adapt = Adapt(), enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 on_throttled: Callable[[str, float], None] | None = None) -> None:
        self._limit_of = limit_of  # provider -> "1000/minute" or None (read at each call: providers change)
        self._adapt = adapt
        self._enabled = enabled
        self._clock = clock
        self._on_throttled = on_throttled  # (provider, seconds from now the provider asked us to wait)
        self._share = 0.0
        self._buckets: dict[str, tuple[str, TokenBucket]] = {}  # provider -> (the limit it was made for, bucket)
        self._held: dict[str, float] = {}  # provider -> held until (clock), heard from another worker

    @property
    def share(self) -> float:
        return self._share

    def set_share(self, owned: int, total: int) -> None:
        """This worker now owns ``owned`` of the ``total`` partitions: its buckets are resized to match."""
        if total <= 0 or not 0 <= owned <= total:
            raise ValueError(f"a share is owned of total partitions, 0 <= owned <= total: not {owned} of {total}")
        self._share = owned / total
        now = self._clock()
        for provider, (limit, bucket) in list(self._buckets.items()):
            config = self._config(limit)
            if config is None:
                del self._buckets[provider]
            else:
                self._buckets[provider] = (limit, bucket.resized(config, now))

    def take(self, provider: str) -> str | None:
        """Take a token for one call to ``provider``; the reason to skip it when there is none."""
        if not self._enabled:
            return None
        limit = self._limit_of(provider)
        if limit is None:
            return None
        if self._share == 0.0:
            return f"this worker owns no partition, so no share of {provider}'s {limit}"
        bucket = self._bucket(provider, limit)
        wait = bucket.take(self._clock())
        if wait == 0.0:
            return None
        if bucket.limited_until_s is not None and bucket.limited_until_s > self._clock():
            return f"{provider} asked us to wait (429): {wait:.1f} s more"
        return f"this worker's share of {provider}'s {limit} is used up: next call in {wait:.2f} s"

    def throttled(self, provider: str, retry_after_s: float | None) -> None:
        """``provider`` answered 429: shrink this worker's rate and hold every worker off until its retry time."""
        limit = self._limit_of(provider) if self._enabled else None
        now = self._clock()
        if limit is not None and self._share > 0.0:
            until = self._bucket(provider, limit).throttled(now, retry_after_s)
        else:
            until = now + (retry_after_s or 1.0)
            self._held[provider] = max(self._held.get(provider, until), until)
        if self._on_throttled is not None:
            self._on_throttled(provider, until - now)

    def hold(self, provider: str, wait_s: float) -> None:
        """Another worker's 429 from ``provider``: take no token from it for ``wait_s``."""
        until = self._clock() + wait_s
        self._held[provider] = max(self._held.get(provider, until), until)
        entry = self._buckets.get(provider)
        if entry is not None:
            entry[1].hold_until(until)

    def free_in(self, provider: str) -> float:
        """Seconds until a call to ``provider`` may take a token (0: now)."""
        limit = self._limit_of(provider) if self._enabled else None
        if limit is None:
            return 0.0
        if self._share == 0.0:
            return float("inf")
        bucket, now = self._bucket(provider, limit), self._clock()
        if bucket.limited_until_s is not None and bucket.limited_until_s > now:
            return bucket.limited_until_s - now
        return max(0.0, (1.0 - bucket.level(now)) / bucket.rate_per_s)

    def held_for(self, provider: str) -> float:
        """Seconds before ``provider`` may be called again after a 429 (0: not held)."""
        return max(0.0, self._held.get(provider, 0.0) - self._clock())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per provider with a limit: this worker's share of it, tokens now, the rate now (for views)."""
        now = self._clock()
        out = {}
        for provider, (limit, bucket) in sorted(self._buckets.items()):
            out[provider] = {"limit": limit, "share": round(self._share, 4),
                             "share_per_s": round(bucket.config.rate_per_s, 4),
                             "rate_per_s": round(bucket.rate_per_s, 4), "tokens": round(bucket.level(now), 3),
                             "limited_for_s": round(max(0.0, (bucket.limited_until_s or now) - now), 3)}
        return out

    def _bucket(self, provider: str, limit: str) -> TokenBucket:
        entry = self._buckets.get(provider)
        if entry is not None and entry[0] == limit:
            return entry[1]
        config = self._config(limit)
        bucket = entry[1].resized(config, self._clock()) if entry else TokenBucket(config, now_s=self._clock())
        held = self._held.get(provider)
        if held is not None:
            bucket.hold_until(held)
        self._buckets[provider] = (limit, bucket)
        return bucket

    def _config(self, limit: str) -> BucketConfig | None:
        if self._share == 0.0:
            return None
        count, period_s = parse_rate(limit)
        rate = count / period_s * self._share
        return BucketConfig(rate_per_s=rate, burst=max(1.0, rate), decrease=self._adapt.decrease,
                            floor_share=self._adapt.floor_share, recover_s=self._adapt.recover_s)
