"""The ``windows`` and ``alerts`` settings sections, and the alert policy they make.

Kept apart from :mod:`llmrouter.config.settings` (which includes them) so the rules'
shapes live beside their thresholds. The spec's rules (§7.2) are fixed in what
they measure and whom they judge (:data:`RULE_SHAPES`); the settings give
their thresholds, spans, durations and severities.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmrouter.config.types import Section
from llmrouter.core.alerts import SEVERITIES, AnomalyRule, Policy, Rule

Severity = Literal[SEVERITIES]

# rule -> (measure, the subject kinds it judges, fire below the threshold rather than above)
RULE_SHAPES: dict[str, tuple[str, frozenset[str], bool]] = {
    "response_time": ("p95_latency_s", frozenset({"all", "priority"}), False),
    "error_rate": ("error_rate", frozenset({"all", "priority"}), False),
    "memory": ("memory_bytes", frozenset({"worker"}), False),
    "cache_hit_rate": ("hit_rate", frozenset({"all"}), True),
    "provider_failure_rate": ("error_rate", frozenset({"provider"}), False),
}


class WindowsSettings(Section):
    """Windowed aggregates of every outcome (llmrouter/core/windows.py)."""

    enabled: bool = Field(True, description="false: nothing is counted or sent, and no alert is judged")
    size_s: float = Field(60.0, gt=0, description="a tumbling window; the alert spans are runs of them")
    retention_s: float = Field(3600.0, gt=0, description="windows older than this are deleted")
    flush_interval_s: float = Field(1.0, gt=0, le=60, description="how often each worker sends what it counted "
                                    "(a worker killed loses at most this much of its outcomes)")


class RuleSettings(Section):
    threshold: float = Field(description="in the rule's unit: seconds, a share (0.05 = 5 %), bytes")
    window_s: float = Field(60.0, gt=0, description="the span the figure is taken over (a hopping window)")
    for_s: float = Field(0.0, ge=0, description="how long it must hold before the alert fires")
    min_count: int = Field(1, ge=1, description="fewer outcomes in the span are not enough to judge")
    severity: Severity = "warning"


class AlertRules(Section):
    """The spec's rules (§7.2)."""

    response_time: RuleSettings = RuleSettings(threshold=5.0, window_s=60, for_s=120, min_count=10)
    error_rate: RuleSettings = RuleSettings(threshold=0.05, window_s=60, for_s=60, min_count=20, severity="critical")
    memory: RuleSettings = RuleSettings(threshold=1.8e9, window_s=60)
    cache_hit_rate: RuleSettings = RuleSettings(threshold=0.70, window_s=300, min_count=50, severity="info")
    provider_failure_rate: RuleSettings = RuleSettings(threshold=0.10, window_s=60, min_count=10)


class AnomalySettings(Section):
    """EWMA z-score per provider on each closed window (llmrouter/core/anomaly.py)."""

    enabled: bool = True
    alpha: float = Field(0.2, gt=0, lt=1, description="weight of the newest window")
    z: float = Field(3.0, gt=0, description="deviations above the usual that make an anomaly")
    warmup_windows: int = Field(10, ge=1, description="windows learned before any verdict")
    min_count: int = Field(20, ge=1, description="calls a window needs to be judged or learned")
    min_std_latency_ms: float = Field(20.0, gt=0, description="the deviation floor of the mean call latency")
    min_std_failure_rate: float = Field(0.02, gt=0, description="the deviation floor of the failure rate")
    severity: Severity = "warning"


class AlertsSettings(Section):
    enabled: bool = Field(True, description="false: windows are still kept, no rule is judged")
    evaluate_interval_s: float = Field(5.0, gt=0, le=300, description="how often the rules are judged")
    escalate_after_s: float = Field(900.0, ge=0, description="a firing alert goes one severity up after this "
                                    "long, and again after each as long (0: never)")
    webhook_url: str | None = Field(None, description="every alert record is also POSTed here as JSON")
    webhook_timeout_s: float = Field(2.0, gt=0, le=60)
    rules: AlertRules = AlertRules()
    anomaly: AnomalySettings = AnomalySettings()


def policy(alerts: AlertsSettings, windows: WindowsSettings) -> Policy:
    """The rules to judge, from the settings."""
    rules = []
    for name, (measure, subjects, below) in RULE_SHAPES.items():
        r: RuleSettings = getattr(alerts.rules, name)
        rules.append(Rule(name=name, measure=measure, subjects=subjects, threshold=r.threshold, window_s=r.window_s,
                          for_s=r.for_s, min_count=r.min_count, severity=r.severity, below=below))
    a = alerts.anomaly
    settle_s = 3 * windows.flush_interval_s  # batches sent as a window closed are in by then
    common = {"subjects": frozenset({"provider"}), "alpha": a.alpha, "z": a.z, "warmup": a.warmup_windows,
              "min_count": a.min_count, "severity": a.severity, "settle_s": settle_s}
    anomalies = (AnomalyRule(name="latency_anomaly", measure="mean_latency_ms", min_std=a.min_std_latency_ms, **common),
                 AnomalyRule(name="failure_anomaly", measure="error_rate", min_std=a.min_std_failure_rate, **common)
                 ) if a.enabled else ()
    return Policy(rules=tuple(rules), anomalies=anomalies, escalate_after_s=alerts.escalate_after_s,
                  window_size_s=windows.size_s)
