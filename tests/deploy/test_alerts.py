"""The alert rules pass Prometheus's own checks: `promtool check rules`, `promtool check config`
(prometheus.yml loads them) and `promtool test rules` unit tests that can fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.conftest import DEPLOY, REPO, require_binary

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO / "tests" / "deploy" / "data" / "alerts_test.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_alert_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_prometheus_config_loads_the_alert_rules():
    result = promtool("check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_that_fires_it():
    rules = yaml.safe_load(ALERTS.read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert names == fired


def test_the_unit_tests_fail_when_a_threshold_changes(tmp_path):
    """The unit tests can fail: raise the model-error threshold to 10 % and the 9 % case no
    longer fires."""
    rules = ALERTS.read_text().replace("> 0.05", "> 0.10")
    assert rules != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(rules)
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["rule_files"] = [str(tmp_path / "alerts.yml")]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", tmp_path / "alerts_test.yml")
    assert result.returncode != 0
    assert "VoicetraceModelErrors" in result.stdout + result.stderr


def test_a_rule_naming_a_bad_expression_fails_the_check(tmp_path):
    broken = tmp_path / "alerts.yml"
    broken.write_text(ALERTS.read_text().replace("> 0.05", "> > 0.05"))
    result = promtool("check", "rules", broken)
    assert result.returncode != 0
