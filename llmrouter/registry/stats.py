"""Per-provider figures for the registry: response time, error rate, usage,
cost and the last health check (F052, F053).

Pure: times come in as arguments. The latency and error-rate figures cover
the last ``window`` calls, so a provider that recovers looks healthy again
soon; calls, tokens and cost are totals since the worker started.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProviderStats:
    window: int = 100
    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    healthy: bool | None = None  # None until the first health check
    health_detail: str = ""
    health_latency_ms: float = 0.0
    checked_at_s: float | None = None
    _recent: deque[tuple[bool, float]] = field(default_factory=deque, repr=False)

    def record_call(self, *, ok: bool, latency_ms: float) -> None:
        """One attempt at this provider (skipped attempts are not calls)."""
        self.calls += 1
        self.errors += 0 if ok else 1
        self._recent.append((ok, latency_ms))
        while len(self._recent) > self.window:
            self._recent.popleft()

    def record_usage(self, *, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd

    def record_health(self, *, healthy: bool, detail: str, latency_ms: float, at_s: float) -> None:
        self.healthy, self.health_detail, self.health_latency_ms, self.checked_at_s = healthy, detail, latency_ms, at_s

    @property
    def error_rate(self) -> float:
        """Failed share of the recent calls (0 with no calls)."""
        if not self._recent:
            return 0.0
        return sum(1 for ok, _ in self._recent if not ok) / len(self._recent)

    def latency_ms(self, quantile: float) -> float | None:
        """A quantile of the recent successful calls' latency, or None without any."""
        latencies = sorted(latency for ok, latency in self._recent if ok)
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(quantile * len(latencies)))]

    def snapshot(self, *, now_s: float) -> dict[str, Any]:
        """The figures as JSON-ready values, for the web view and ``providers list``."""
        return {
            "calls": self.calls, "errors": self.errors, "recent_calls": len(self._recent),
            "error_rate": round(self.error_rate, 4),
            "latency_p50_ms": self.latency_ms(0.5), "latency_p95_ms": self.latency_ms(0.95),
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "health": {
                "healthy": self.healthy, "detail": self.health_detail, "latency_ms": self.health_latency_ms,
                "checked_s_ago": None if self.checked_at_s is None else round(now_s - self.checked_at_s, 1),
            },
        }
