"""infra/prometheus: the alert rules and the Grafana dashboard parse, name only metrics llmrouter/observability/metrics.py
defines, and say the same thresholds as the router's own rules (the `alerts` settings' defaults).

Prometheus' own ``promtool`` (Debian's ``prometheus`` package, which infra/bootstrap.sh installs) checks the rules
too: ``check rules`` parses them as Prometheus does, ``test rules`` runs infra/prometheus/alerts_test.yml, where
each rule fires on a series over its threshold and stays quiet under it. Without promtool those tests skip, and
fail under CI (tests/required.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmrouter.alerting.config import RULE_SHAPES
from llmrouter.core.alerts import SEVERITIES
from prometheus_client.metrics import MetricWrapperBase

from llmrouter.observability.metrics import Metrics
from llmrouter.config.settings import load_settings
from tests.required import missing

INFRA = Path(__file__).resolve().parents[2] / "infra" / "prometheus"
METRIC = re.compile(r"\bllmrouter_[a-z0-9_]+")
COMPARISON = re.compile(r"([<>])=?\s*([0-9][0-9.e+]*)")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
SELECTOR = re.compile(r"\b(llmrouter_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SERIES_LABELS = {"le", "instance", "job"}  # what Prometheus and the histogram add


def exposed_names() -> set[str]:
    """Every sample name /metrics/ can show, by metric type (prometheus_client names a counter's samples
    <name>_total and a histogram's <name>_bucket/_count/_sum)."""
    return {family.name + suffix for family in Metrics().registry.collect() for suffix in SUFFIXES[family.type]}


def label_names() -> dict[str, set[str]]:
    """Sample name -> the labels the router gives it."""
    out = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, MetricWrapperBase):
            for suffix in SUFFIXES[metric._type]:
                out[metric._name + suffix] = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
    return out


def check_labels(expr: str) -> None:
    """Every label an expression selects on or groups by is one its metrics carry (a renamed label, such as
    route -> path, would leave a selector that matches nothing)."""
    labels = label_names()
    for name, matchers in SELECTOR.findall(expr):
        assert set(MATCHER.findall(matchers)) <= labels[name], (name, matchers)
    carried = set().union(*(labels[name] for name in METRIC.findall(expr))) | SERIES_LABELS
    for grouping in GROUPING.findall(expr):
        assert {label.strip() for label in grouping.split(",") if label.strip()} <= carried, (grouping, expr)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((INFRA / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((INFRA / "grafana-dashboard.json").read_text())


def test_every_rule_names_only_metrics_and_labels_the_router_defines():
    """A typo or a renamed metric or label would make a rule that never fires: every name in an expression
    exists, and every label it selects on or groups by is one of its metrics' labels."""
    known = exposed_names()
    for rule in rules():
        names = set(METRIC.findall(rule["expr"]))
        assert names and names <= known, (rule["alert"], names - known)
        check_labels(rule["expr"])


def test_there_is_one_rule_per_alert_condition_of_the_specification_with_the_routers_threshold():
    """The five rules of §7.2, labelled with the router's rule name; each compares against the threshold of the
    `alerts` settings' defaults and holds for the same time; each has a severity the router knows."""
    settings = load_settings(env={}).alerts.rules
    by_rule = {rule["labels"]["rule"]: rule for rule in rules()}
    assert set(by_rule) == set(RULE_SHAPES)
    for name, rule in by_rule.items():
        ours = getattr(settings, name)
        below = RULE_SHAPES[name][2]
        comparisons = [(op, float(value)) for op, value in COMPARISON.findall(rule["expr"])]
        assert ("<" if below else ">", ours.threshold) in comparisons, (name, comparisons)
        assert _seconds(rule.get("for", "0s")) == ours.for_s, name
        assert rule["labels"]["severity"] == ours.severity in SEVERITIES
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def promtool(*args: str) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    if path is None:
        missing("promtool is not installed (Debian's prometheus package: infra/bootstrap.sh installs it)")
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=120)


def test_promtool_reads_every_rule_as_prometheus_would():
    """`promtool check rules`: every expression is PromQL Prometheus accepts, every template parses, and it
    finds as many rules as these tests read."""
    checked = promtool("check", "rules", str(INFRA / "alerts.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout, checked.stdout


def test_promtool_rejects_a_rule_whose_expression_does_not_parse(tmp_path):
    """The check above can fail: the same file with one parenthesis missing is refused, naming the rule."""
    broken = (INFRA / "alerts.yml").read_text().replace("> 1.8e9", "> (1.8e9")
    assert broken != (INFRA / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    checked = promtool("check", "rules", str(tmp_path / "alerts.yml"))
    assert checked.returncode != 0 and "LLMRouterMemoryHigh" in checked.stdout + checked.stderr


def test_each_rule_fires_on_a_series_over_its_threshold_and_stays_quiet_under_it():
    """`promtool test rules` on alerts_test.yml passes, and that file makes every rule fire at least once (with
    its labels and annotations) and holds each rule with a `for:` quiet before its time."""
    tested = promtool("test", "rules", str(INFRA / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = [case for test in yaml.safe_load((INFRA / "alerts_test.yml").read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in rules()}
    assert {rule["alert"] for rule in rules() if "for" in rule} <= quiet


def test_the_dashboard_parses_and_every_panel_queries_metrics_the_router_defines():
    """Grafana's JSON model: unique panel ids, a Prometheus datasource variable, and every query's metrics and
    labels exist."""
    board = dashboard()
    known = exposed_names()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert board["templating"]["list"][0]["query"] == "prometheus"
    assert panels
    for panel in panels:
        exprs = [target["expr"] for target in panel["targets"]]
        names = {name for expr in exprs for name in METRIC.findall(expr)}
        assert exprs and names and names <= known, (panel["title"], names - known)
        for expr in exprs:
            check_labels(expr)


def test_the_dashboard_shows_each_alert_rule_with_its_threshold_line():
    """The panels of the five rules draw their threshold, so an operator sees how near the alert is."""
    settings = load_settings(env={}).alerts.rules
    lines = {step["value"] for p in dashboard()["panels"] if p["type"] != "row"
             for step in p["fieldConfig"]["defaults"]["thresholds"]["steps"] if step["value"] is not None}
    for name in RULE_SHAPES:
        assert getattr(settings, name).threshold in lines, name


@pytest.mark.parametrize("text, seconds", [("0s", 0), ("1m", 60), ("2m", 120), ("90s", 90)])
def test_durations_are_read_as_prometheus_writes_them(text, seconds):
    """The helper of these tests reads Prometheus' duration format."""
    assert _seconds(text) == seconds


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
