"""Alert rules over the windowed aggregates (§7.2, F025): pure, the clock passed in.

Each rule judges one figure of a subject (see :mod:`llmrouter.core.windows`)
over a hopping window of ``window_s`` ending now, and each (rule, subject)
pair is a small state machine, as Prometheus' alerting rules are::

    ok ──(condition holds)──► pending ──(held for_s)──► firing ──(no longer holds)──► ok
     └────────(holds, for_s = 0)─────────────────────────►┘  │
                                                              └─(still firing after escalate_after_s)─► firing,
                                                                 one severity up (again after each as long)

Only the moves into and out of ``firing`` (and an escalation) make an
:data:`Alert` record; an alert that stays firing makes none, however often it
is judged: that is the de-duplication.

A span with fewer than ``min_count`` outcomes is not enough to judge: it
neither fires an alert nor moves a pending one on. A firing alert rides out
such a span (a rebalance pauses a subject's traffic for a second or two, a
quiet minute is not a recovery) for as long as the rule's window; a whole
window without enough data resolves it, as an absent series does in
Prometheus.

Records carry the ``fingerprint`` of their (rule, subject) and the ``since_ms``
the condition began to hold: one occurrence of an alert is (fingerprint,
since_ms), whatever moves it makes; its records differ by ``state`` and
``escalations``.

The anomaly rules (:mod:`llmrouter.core.anomaly`) judge each closed window of a
provider once, in order, against what the provider usually does, and fire
while the last window judged was an anomaly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from llmrouter.core.anomaly import Ewma, judge
from llmrouter.core.windows import Aggregate, merge_all, span_starts, subject_kind

SEVERITIES = ("info", "warning", "critical")  # an escalation moves one step right, never past the last
FIRING, RESOLVED = "firing", "resolved"
OK, PENDING = "ok", "pending"


def _p95_s(a: Aggregate) -> float | None:
    q = a.quantile_ms(0.95)
    return None if q is None else q / 1000.0


# measure -> (the figure of an aggregate, how many outcomes it rests on)
MEASURES: dict[str, tuple[Callable[[Aggregate], float | None], Callable[[Aggregate], int]]] = {
    "p95_latency_s": (_p95_s, lambda a: a.latencies),
    "error_rate": (lambda a: a.error_rate, lambda a: a.count),
    "hit_rate": (lambda a: a.hit_rate, lambda a: a.count),
    "memory_bytes": (lambda a: float(a.memory_max_bytes) if a.memory_max_bytes else None,
                     lambda a: 1 if a.memory_max_bytes else 0),
    "mean_latency_ms": (lambda a: a.mean_latency_ms, lambda a: a.latencies),
}
UNITS = {"p95_latency_s": "s", "error_rate": "%", "hit_rate": "%", "memory_bytes": "B", "mean_latency_ms": "ms"}


@dataclass(frozen=True)
class Rule:
    """A fixed threshold: fire when ``measure`` is above ``threshold`` (under it with ``below``)."""

    name: str
    measure: str
    subjects: frozenset[str]  # the subject kinds it judges: all, priority, provider, worker
    threshold: float
    window_s: float
    for_s: float = 0.0
    min_count: int = 1
    severity: str = "warning"
    below: bool = False

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"rule {self.name}: no measure {self.measure!r}; known: {', '.join(MEASURES)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity is one of {', '.join(SEVERITIES)}, not {self.severity!r}")
        if self.window_s <= 0 or self.for_s < 0:
            raise ValueError(f"rule {self.name}: window_s must be above 0 and for_s at least 0")


@dataclass(frozen=True)
class AnomalyRule:
    """An EWMA z-score on each closed window of ``measure`` (see :mod:`llmrouter.core.anomaly`)."""

    name: str
    measure: str
    subjects: frozenset[str]
    alpha: float = 0.2
    z: float = 3.0
    warmup: int = 10
    min_std: float = 0.0
    min_count: int = 10
    severity: str = "warning"
    settle_s: float = 5.0  # a window is judged this long after it closed: batches sent as it closed arrive late


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    anomalies: tuple[AnomalyRule, ...] = ()
    escalate_after_s: float = 900.0  # 0: never escalate
    window_size_s: float = 60.0

    def rules_for(self, subject: str) -> list[Rule | AnomalyRule]:
        kind = subject_kind(subject)
        return [r for r in (*self.rules, *self.anomalies) if kind in r.subjects]

    @property
    def longest_window_s(self) -> float:
        return max([r.window_s for r in self.rules] + [self.window_size_s], default=self.window_size_s)


@dataclass(frozen=True)
class AlertState:
    """One (rule, subject) pair as its owner keeps it (the ``alert_state`` table)."""

    status: str = OK
    since_ms: int = 0  # when the condition began to hold (pending and firing)
    severity: str = ""
    escalations: int = 0
    value: float | None = None  # the last figure judged
    threshold: float | None = None
    judged_ms: int = 0
    evidence_ms: int = 0  # the last judgement with enough data
    detector: dict[str, Any] | None = None  # anomaly rules: the EWMA and the last window judged
    outbox: tuple[dict[str, Any], ...] = ()  # records decided, not yet known to be sent (agents/windows.py)

    def to_bytes(self) -> bytes:
        return json.dumps({"status": self.status, "since_ms": self.since_ms, "severity": self.severity,
                           "escalations": self.escalations, "value": self.value, "threshold": self.threshold,
                           "judged_ms": self.judged_ms, "evidence_ms": self.evidence_ms, "detector": self.detector,
                           "outbox": list(self.outbox)},
                          separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> AlertState:
        try:
            data = json.loads(raw)
            return cls(status=str(data["status"]), since_ms=int(data["since_ms"]), severity=str(data["severity"]),
                       escalations=int(data["escalations"]), value=data.get("value"),
                       threshold=data.get("threshold"), judged_ms=int(data.get("judged_ms", 0)),
                       evidence_ms=int(data.get("evidence_ms", 0)), detector=data.get("detector"), outbox=tuple(data.get("outbox") or ()))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not an alert state: {exc!r}") from None


def fingerprint(rule: str, subject: str) -> str:
    """The identity of a (rule, subject) pair, the same on every worker and across restarts."""
    return hashlib.sha256(f"{rule}\x00{subject}".encode()).hexdigest()[:16]


def state_key(rule: str, subject: str) -> bytes:
    return f"{rule}|{subject}".encode()


def parse_state_key(key: bytes) -> tuple[str, str]:
    rule, bar, subject = key.decode("utf-8", "replace").partition("|")
    if not bar:
        raise ValueError(f"not an alert state key: {key!r}")
    return rule, subject


# ---- judging -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    value: float | None
    threshold: float
    holds: bool
    window_s: float
    detail: str = ""
    enough: bool = True  # enough outcomes to judge


def evaluate(policy: Policy, subject: str, windows: Mapping[int, Aggregate], states: Mapping[str, AlertState],
             now_ms: int) -> dict[str, tuple[AlertState, list[dict[str, Any]]]]:
    """Every rule that judges ``subject``: its new state and the records it makes now. ``windows``: the
    subject's tumbling windows by start; ``states``: the current state by rule name (absent: ok)."""
    size_ms = round(policy.window_size_s * 1000)
    out = {}
    for rule in policy.rules_for(subject):
        state = states.get(rule.name, AlertState())
        if isinstance(rule, Rule):
            spans = span_starts(now_ms, size_ms, round(rule.window_s * 1000))
            judged = judge_threshold(rule, merge_all([windows[s] for s in spans if s in windows]))
            judged = replace(judged, window_s=len(spans) * policy.window_size_s)
            for_ms = round(rule.for_s * 1000)
        else:
            state, judged = judge_anomaly(rule, state, windows, now_ms=now_ms, size_ms=size_ms)
            for_ms = 0
            if judged is None:  # no window closed since the last verdict
                out[rule.name] = (state, [])
                continue
        out[rule.name] = step(rule.name, subject, state, judged, now_ms=now_ms, for_ms=for_ms,
                              severity=rule.severity, escalate_after_ms=round(policy.escalate_after_s * 1000),
                              measure=rule.measure)
    return out


def judge_threshold(rule: Rule, aggregate: Aggregate) -> Judged:
    figure, size = MEASURES[rule.measure]
    value = figure(aggregate)
    enough = size(aggregate) >= rule.min_count
    holds = enough and value is not None and (value < rule.threshold if rule.below else value > rule.threshold)
    detail = "" if enough else f"not enough data ({size(aggregate)} of {rule.min_count})"
    return Judged(value=value, threshold=rule.threshold, holds=holds, window_s=rule.window_s, detail=detail,
                  enough=enough)


def judge_anomaly(rule: AnomalyRule, state: AlertState, windows: Mapping[int, Aggregate], *, now_ms: int,
                  size_ms: int) -> tuple[AlertState, Judged | None]:
    """Teach the detector every window closed (and settled) since the last one it saw, oldest first; the
    verdict on the newest of them (None when there is none). A window with too few outcomes is neither
    learned nor an anomaly."""
    detector = dict(state.detector or {})
    ewma, last_ms = Ewma.from_dict(detector.get("ewma")), detector.get("last_ms")
    settled = now_ms - round(rule.settle_s * 1000)
    closed = sorted(start for start in windows
                    if (last_ms is None or start > last_ms) and start + size_ms <= settled)
    if not closed:
        return state, None
    figure, size = MEASURES[rule.measure]
    judged = None
    for start in closed:
        aggregate = windows[start]
        value = figure(aggregate)
        if value is None or size(aggregate) < rule.min_count:
            judged = Judged(value=value, threshold=0.0, holds=False, window_s=size_ms / 1000,
                            detail=f"not enough data ({size(aggregate)} of {rule.min_count})", enough=False)
            continue
        ewma, verdict = judge(ewma, value, alpha=rule.alpha, z_limit=rule.z, warmup=rule.warmup,
                              min_std=rule.min_std)
        detail = "learning" if verdict.z is None else f"z={verdict.z:.1f} (limit {rule.z:g})"
        judged = Judged(value=value, threshold=verdict.threshold, holds=verdict.anomalous,
                        window_s=size_ms / 1000, detail=detail)
    detector.update(ewma=ewma.to_dict(), last_ms=closed[-1])
    return replace(state, detector=detector), judged


def step(rule: str, subject: str, state: AlertState, judged: Judged, *, now_ms: int, for_ms: int, severity: str,
         escalate_after_ms: int, measure: str) -> tuple[AlertState, list[dict[str, Any]]]:
    """One judgement applied to a (rule, subject) pair: its new state and the records to send."""
    state = replace(state, value=judged.value, threshold=judged.threshold, judged_ms=now_ms,
                    evidence_ms=now_ms if judged.enough else state.evidence_ms)

    def record(new: AlertState, what: str) -> dict[str, Any]:
        return alert_record(rule, subject, new, what, judged, now_ms=now_ms, measure=measure)

    if not judged.holds:
        if state.status == FIRING and not judged.enough and now_ms - state.evidence_ms < judged.window_s * 1000:
            return state, []  # too little to judge, for less than a window: it stays firing
        if state.status == FIRING:
            resolved = replace(state, status=OK)
            return replace(resolved, since_ms=0, severity="", escalations=0), [record(resolved, RESOLVED)]
        return replace(state, status=OK, since_ms=0, severity="", escalations=0), []
    if state.status == OK:
        state = replace(state, status=PENDING, since_ms=now_ms)
    if state.status == PENDING:
        if now_ms - state.since_ms < for_ms:
            return state, []
        fired = replace(state, status=FIRING, severity=severity, escalations=0)
        return fired, [record(fired, FIRING)]
    due = state.since_ms + for_ms + (state.escalations + 1) * escalate_after_ms
    if escalate_after_ms > 0 and now_ms >= due and state.severity != SEVERITIES[-1]:
        higher = SEVERITIES[min(SEVERITIES.index(state.severity) + 1, len(SEVERITIES) - 1)] \
            if state.severity in SEVERITIES else SEVERITIES[-1]
        escalated = replace(state, severity=higher, escalations=state.escalations + 1)
        return escalated, [record(escalated, FIRING)]
    return state, []


def alert_record(rule: str, subject: str, state: AlertState, what: str, judged: Judged, *, now_ms: int,
                 measure: str) -> dict[str, Any]:
    """An ``Alert`` (schemas/Alert.avsc) for llm.alerts."""
    return {"rule": rule, "state": what, "value": float(judged.value or 0.0), "threshold": float(judged.threshold),
            "window_s": round(judged.window_s), "subject": subject,
            "message": describe(rule, subject, what, judged, measure, state), "at_ms": now_ms,
            "severity": state.severity or "info", "since_ms": state.since_ms, "fingerprint": fingerprint(rule, subject),
            "escalations": state.escalations}


def describe(rule: str, subject: str, what: str, judged: Judged, measure: str, state: AlertState) -> str:
    """One sentence for a person: what, where, how much against what limit."""
    value = "no data" if judged.value is None else _format(judged.value, measure)
    limit = _format(judged.threshold, measure)
    over = f"over the last {judged.window_s:g} s"
    if what == RESOLVED:
        text = f"{rule} on {subject} resolved: {value} {over} (limit {limit})"
    elif state.escalations:
        text = f"{rule} on {subject} still firing, escalated to {state.severity}: {value} {over} (limit {limit})"
    else:
        text = f"{rule} on {subject}: {value} {over} (limit {limit})"
    return f"{text}; {judged.detail}" if judged.detail else text


def _format(value: float, measure: str) -> str:
    unit = UNITS.get(measure, "")
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "B":
        return f"{value / 1e9:.2f} GB"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:.2f} {unit}".strip()


def describe_states(states: Mapping[bytes, bytes]) -> list[dict[str, Any]]:
    """Every readable alert state (table key -> value), firing first, for the views."""
    out = []
    for key, raw in states.items():
        try:
            rule, subject = parse_state_key(key)
            state = AlertState.from_bytes(raw)
        except ValueError:
            continue
        out.append({"rule": rule, "subject": subject, "status": state.status, "severity": state.severity or None,
                    "since_ms": state.since_ms or None, "escalations": state.escalations, "value": state.value,
                    "threshold": state.threshold, "judged_ms": state.judged_ms,
                    "fingerprint": fingerprint(rule, subject), "unsent": len(state.outbox)})
    order = {FIRING: 0, PENDING: 1, OK: 2}
    return sorted(out, key=lambda s: (order.get(s["status"], 3), s["rule"], s["subject"]))
