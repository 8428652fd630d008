"""The guards' sections: routing, rate limits, the breaker, backpressure and per-user quotas.

Parts of :class:`~llmrouter.config.settings.Settings`; the breaker, backpressure
and quota sections hand :mod:`llmrouter.core` its own config objects, the
written rates parsed into numbers here, at the edge (``to_config``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmrouter.config.types import RateText, Section, parse_rate
from llmrouter.core.backpressure import PAUSABLE, BackpressureConfig
from llmrouter.core.breaker import BreakerConfig
from llmrouter.core.bucket import Rate
from llmrouter.core.quota import QuotaConfig


class RoutingSettings(Section):
    """Choosing among providers (F002, F020, F037, F055); see llmrouter/core/routing.py."""

    equivalent: list[list[str]] = Field([], description="groups of providers that may stand in for each other, "
                                        "e.g. [[huggingface, together]]: within a group the strategy picks the order")
    strategy: Literal["round_robin", "latency", "capacity"] = Field(
        "latency", description="round_robin: take turns; latency: the fastest recently first; capacity: the most "
                               "free concurrency first")
    hedge_after_ms: float | None = Field(None, gt=0, description="ask the next provider too when the first has not "
                                         "answered by then (first good answer wins; both are paid); None: off")
    hedge_priorities: list[Literal["critical", "high", "normal", "low"]] = Field(
        ["critical"], description="the priorities that are hedged (streamed requests never are)")


class RateLimitSettings(Section):
    """Token buckets per provider (F006): the limits are the providers' ``rate_limit`` settings, shared by the
    workers in proportion to the partitions each owns (llmrouter/dispatch/limits.py)."""

    enabled: bool = Field(True, description="false: no rate limit is enforced (429s are still honoured)")
    decrease: float = Field(0.5, gt=0, lt=1, description="a 429 multiplies this worker's rate by this")
    floor_share: float = Field(0.1, gt=0, le=1, description="the rate never shrinks below this share of the limit")
    recover_s: float = Field(60.0, gt=0, description="from the floor back to the limit, linearly, in this long")


class BreakerSettings(Section):
    """A circuit breaker per provider (F003); see llmrouter/core/breaker.py for the states."""

    window_s: float = Field(30.0, gt=0, description="outcomes older than this do not count")
    min_calls: int = Field(10, ge=1, description="fewer calls in the window never open it on the failure rate")
    failure_rate: float = Field(0.5, gt=0, le=1, description="open at this share of failures in the window")
    consecutive_failures: int = Field(5, ge=0, description="open at once after this many failures in a row (0: off)")
    cooldown_s: float = Field(5.0, gt=0, description="open this long before the first probes")
    max_cooldown_s: float = Field(60.0, gt=0, description="each failed probe doubles the cool-down, up to this")
    half_open_probes: int = Field(3, ge=1, description="calls let through while half-open")
    ramp_s: float = Field(20.0, ge=0, description="after closing, the admitted share grows to all over this long")

    @model_validator(mode="after")
    def _consistent(self) -> BreakerSettings:
        self.to_config()  # cooldown_s <= max_cooldown_s and the like, refused in the breaker's own words
        return self

    def to_config(self) -> BreakerConfig:
        return BreakerConfig(**self.model_dump())


class BackpressureSettings(Section):
    """Backpressure by priority (F004): lower priorities paused while more urgent requests wait for a provider
    slot (llmrouter/core/backpressure.py)."""

    enabled: bool = Field(True, description="false: no priority is ever paused")
    pause_waiting: int = Field(1, ge=1, description="more urgent requests waiting for a provider slot at which "
                                                    "a priority is in their way")
    resume_waiting: int = Field(0, ge=0, description="at most this many waiting and it is out of their way")
    pause_after_s: float = Field(1.0, ge=0, description="the pressure held this long before a priority is paused")
    resume_after_s: float = Field(2.0, gt=0, description="calm this long before a paused priority resumes")
    max_resume_after_s: float = Field(30.0, gt=0, description="a priority paused again soon after it resumed "
                                      "waits twice as long the next time, up to this")
    sample_interval_s: float = Field(0.1, gt=0, le=5, description="how often the load is sampled")
    deepest: Literal[PAUSABLE] = Field("high", description="the most urgent priority that may be paused "
                                                           "(critical never is)")

    @model_validator(mode="after")
    def _consistent(self) -> BackpressureSettings:
        self.to_config()  # resume_waiting < pause_waiting and the like, refused in the decision's own words
        return self

    def to_config(self) -> BackpressureConfig:
        return BackpressureConfig(**self.model_dump(exclude={"enabled", "sample_interval_s"}))


class QuotaSettings(Section):
    """Requests per user (F007), checked by the answer stage before any provider (llmrouter/core/quota.py)."""

    per_user: RateText | None = Field(None, description="e.g. '100/minute': each user's quota; None: none")
    overrides: dict[str, RateText | None] = Field({}, description="user_id -> its own quota (None: not limited)")
    critical_bypass: bool = Field(True, description="critical requests are neither refused nor counted")

    def to_config(self) -> QuotaConfig:
        """The quotas as core takes them: every written rate parsed into numbers."""
        return QuotaConfig(per_user=_rate(self.per_user), critical_bypass=self.critical_bypass,
                           overrides={user: _rate(limit) for user, limit in self.overrides.items()})


def _rate(text: str | None) -> Rate | None:
    if text is None:
        return None
    count, period_s = parse_rate(text)
    return Rate(count=count, period_s=period_s, text=text)
