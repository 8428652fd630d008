"""Retry policy (F008): exponential backoff with full jitter, capped, honouring
a provider's Retry-After, and never waiting when moving on is better.

Pure: randomness comes in as an argument, nothing sleeps here. The dispatcher
asks :meth:`RetryPolicy.wait_before_retry` after a failed call and either
sleeps that long and calls the same provider again, or moves on to the next
provider of the chain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llmrouter.errors import ProviderError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently one provider is tried again.

    ``attempts`` counts the *extra* tries after the first call (F012's
    ``retry_attempts: 3`` means up to four calls). A wait longer than
    ``max_wait_s`` (say, a Retry-After of a minute) is not worth it: the
    request moves on to the next provider instead.
    """

    attempts: int = 3
    base_s: float = 0.1
    cap_s: float = 2.0
    max_wait_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ValueError(f"attempts must be 0 or more, not {self.attempts}")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"base_s ({self.base_s}) must be positive and at most cap_s ({self.cap_s})")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)] for the ``retry``-th retry (0-based)."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2 ** retry)))

    def wait_before_retry(
        self, error: ProviderError, *, retries_done: int, time_left_s: float, rng: random.Random,
    ) -> float | None:
        """Seconds to wait before calling the same provider again, or None to move on."""
        if not error.retriable or retries_done >= self.attempts:
            return None
        wait = self.backoff_s(retries_done, rng)
        if error.retry_after_s is not None:  # a 429's Retry-After, a 503's, Hugging Face's estimated_time
            wait = max(wait, error.retry_after_s)
        if wait > self.max_wait_s or wait >= time_left_s:
            return None
        return wait


NO_RETRY = RetryPolicy(attempts=0)
