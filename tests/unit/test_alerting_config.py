"""The windows and alerts settings (llmrouter/alerting/config.py): the specification's defaults, overrides."""

from __future__ import annotations

import pytest
import yaml

from llmrouter.alerting.config import AlertsSettings, WindowsSettings, policy
from llmrouter.errors import ConfigError
from llmrouter.config.settings import load_settings


def test_the_defaults_are_the_specifications_alert_conditions():
    """§7.2: response time > 5 s for 2 minutes, error rate > 5 % for 1 minute, memory > 1.8 GB, cache hit rate
    < 70 %, provider failure rate > 10 %; one-minute windows."""
    s = load_settings(env={})
    rules = s.alerts.rules
    assert (rules.response_time.threshold, rules.response_time.for_s) == (5.0, 120)
    assert (rules.error_rate.threshold, rules.error_rate.window_s, rules.error_rate.for_s) == (0.05, 60, 60)
    assert rules.memory.threshold == 1.8e9
    assert rules.cache_hit_rate.threshold == 0.70
    assert rules.provider_failure_rate.threshold == 0.10
    assert s.windows.size_s == 60 and s.windows.enabled and s.alerts.enabled


def test_the_shipped_file_says_what_the_models_default_to():
    """default_settings.yaml and the pydantic defaults agree, so a Settings() built in code judges alike."""
    s = load_settings(env={})
    assert s.windows == WindowsSettings() and s.alerts == AlertsSettings()


def test_one_rule_changed_in_a_file_leaves_the_others_as_they_were(tmp_path):
    """Sections merge key by key: a test's short window for one rule keeps every other default."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"alerts": {"rules": {"provider_failure_rate": {"window_s": 3}}},
                                    "windows": {"size_s": 1}}))
    s = load_settings(path, env={})
    assert s.alerts.rules.provider_failure_rate.window_s == 3 and s.alerts.rules.provider_failure_rate.threshold == 0.1
    assert s.alerts.rules.error_rate.window_s == 60 and s.windows.size_s == 1


@pytest.mark.parametrize("override, problem", [
    ({"alerts": {"rules": {"memory": {"severity": "page"}}}}, "alerts.rules.memory.severity"),
    ({"windows": {"size_s": 0}}, "windows.size_s"),
    ({"alerts": {"anomaly": {"alpha": 1.5}}}, "alerts.anomaly.alpha"),
])
def test_a_bad_alert_setting_is_refused_at_load_with_its_path(tmp_path, override, problem):
    """Checked at start, each problem with its dotted path."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(override))
    with pytest.raises(ConfigError, match=problem):
        load_settings(path, env={})


def test_the_policy_judges_each_rule_on_its_subjects_and_drops_the_detector_when_it_is_off():
    """Provider subjects get the failure rule and both anomaly rules; 'all' the request rules and the hit rate."""
    s = load_settings(env={})
    p = policy(s.alerts, s.windows)
    assert [r.name for r in p.rules_for("provider:x")] == ["provider_failure_rate", "latency_anomaly",
                                                           "failure_anomaly"]
    assert [r.name for r in p.rules_for("all")] == ["response_time", "error_rate", "cache_hit_rate"]
    assert [r.name for r in p.rules_for("worker:h:1")] == ["memory"]
    off = policy(s.alerts.model_copy(update={"anomaly": s.alerts.anomaly.model_copy(update={"enabled": False})}),
                 s.windows)
    assert not off.anomalies and p.escalate_after_s == 900 and p.window_size_s == 60
