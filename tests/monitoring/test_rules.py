"""deploy/monitoring's Prometheus config and rules, as Prometheus' own promtool reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.monitoring.conftest import Promtool

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules"
TOKEN_FILE = "/etc/prometheus/sluicegate-token"
SEVERITIES = {"critical", "warning", "info"}


def rule_files() -> list[Path]:
    files = sorted(RULES.glob("*.yml"))
    assert files, "no rule files"
    return files


def alerts() -> list[dict[str, Any]]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_rules_pass_promtool_check(promtool: Promtool) -> None:
    promtool("check", "rules", *map(str, rule_files()))


def test_config_passes_promtool_check(promtool: Promtool, tmp_path: Path) -> None:
    """The shipped prometheus.yml, with its token file and rule glob pointed here:
    promtool checks that the credentials file exists and loads every rule file."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (gateway,) = [job for job in config["scrape_configs"] if job["job_name"] == "sluicegate"]
    assert gateway["authorization"] == {"type": "Bearer", "credentials_file": TOKEN_FILE}
    assert config["rule_files"] == ["rules/*.yml"]
    token = tmp_path / "sluicegate-token"
    token.write_text("sk-test-admin-key\n")
    gateway["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(RULES / "*.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    promtool("check", "config", str(copy))


def test_config_scrapes_the_gateway_engines_and_gpus() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"sluicegate", "vllm", "tei", "dcgm"}
    assert jobs["dcgm"]["static_configs"][0]["targets"][0].endswith(":9400")
    # Only the gateway's /metrics needs a key.
    assert [name for name, job in jobs.items() if "authorization" in job] == ["sluicegate"]


def rule_tests() -> list[Path]:
    files = sorted((RULES / "tests").glob("*_test.yml"))
    assert files, "no rule unit tests"
    return files


def test_alert_unit_tests_pass(promtool: Promtool) -> None:
    promtool("test", "rules", *map(str, rule_tests()))


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    fired = {
        case["alertname"]
        for path in rule_tests()
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alerts()} - fired == set()


def test_alerts_wait_and_say_what_and_how_bad() -> None:
    for rule in alerts():
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
