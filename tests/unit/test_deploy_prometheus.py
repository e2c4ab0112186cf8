"""Prometheus configuration, recording and alerting rules of deploy/ (issue 10).

promtool is Debian's (package ``prometheus``, installed by deploy/install-system-deps.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))
CONFIGS = [PROM / "prometheus.yml", REPO / "deploy" / "compose" / "prometheus.yml"]
OPERATIONS = REPO / "README.md"

# The fixed metric names of docs/notes (TEAM.md "Metric names"): rules may use these and no others.
FIXED_METRICS = {
    "ragward_requests_total", "ragward_request_latency_seconds", "ragward_tokens_total",
    "ragward_cost_usd_total", "ragward_cache_hits_total", "ragward_cache_lookups_total",
    "ragward_rolling_error_rate", "ragward_rolling_request_rate",
    "ragward_rolling_latency_seconds", "ragward_rolling_tokens_avg", "ragward_consumer_lag",
    "ragward_events_consumed_total", "ragward_events_dead_lettered_total",
    "ragward_events_duplicate_total", "ragward_last_event_timestamp_seconds",
    "ragward_events_rejected_total",
    "ragward_quota_degraded", "ragward_audit_spool_fill_ratio",
    "ragward_gateway_requests_total", "ragward_gateway_request_duration_seconds",
    "ragward_gateway_in_flight", "ragward_gateway_circuit_state",
    "ragward_gateway_quota_degraded", "ragward_gateway_spool_bytes",
    "ragward_gateway_spool_capacity_bytes", "ragward_gateway_events_published_total",
    "ragward_alert_notifications_total", "ragward_alerts_firing", "ragward_audit_records_total",
    "ragward_audit_store_commit_seconds", "ragward_gateway_time_to_first_token_seconds",
}
# ragward's default rules (alerting/default_rules.yaml) each have a Prometheus twin "Ragward<name>".
DEFAULT_RULE_NAMES = {
    "HighErrorRate", "HighLatencyP99", "HighTokensPerRequest", "AvailabilityBudgetFastBurn",
    "AvailabilityBudgetSlowBurn", "EventsSilent", "ConsumerLagHigh", "QuotaControlDegraded",
    "AuditSpoolFilling", "HighTimeToFirstTokenP99", "ForgedEvents",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: run deploy/install-system-deps.sh (Debian's prometheus)")
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def rules() -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_promtool_check_config(config: Path) -> None:
    """Both scrape configs (Kubernetes and compose) pass promtool and find the rule files."""
    result = run_promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_check_rules() -> None:
    """Recording and alerting rules are valid and lint-clean (no duplicate rules)."""
    result = run_promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    """Every promtool unit test (input series -> expected alerts) passes."""
    assert TEST_FILES
    result = run_promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_promtool_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: raising the spool and error-rate limits makes them
    fail."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    alerts_text = (PROM / "rules" / "alerts.yml").read_text()
    spool = "ragward_audit_spool_fill_ratio) > "
    errors = "ragward:request_error_ratio:rate5m > "
    mutated = alerts_text.replace(spool + "0.8", spool + "0.9")
    mutated = mutated.replace(errors + "0.05", errors + "0.2")
    assert spool + "0.9" in mutated and errors + "0.2" in mutated
    (tmp_path / "rules" / "alerts.yml").write_text(mutated)
    shutil.copy(PROM / "rules" / "recording.yml", tmp_path / "rules" / "recording.yml")
    for name in ("pipeline_alerts_test.yml", "request_alerts_test.yml"):
        shutil.copy(PROM / "tests" / name, tmp_path / "tests" / name)
    result = run_promtool("test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert result.returncode != 0
    assert "RagwardAuditSpoolFilling" in result.stdout + result.stderr
    assert "RagwardHighErrorRate" in result.stdout + result.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    """Each alert name appears in some promtool test with a non-empty expectation."""
    tested: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    tested.add(check["alertname"])
    assert {a["alert"] for a in alerts()} <= tested


def test_every_default_rule_has_a_prometheus_twin() -> None:
    """ragward's default alert rules are all mirrored, named Ragward<rule>."""
    names = {a["alert"] for a in alerts()}
    assert {f"Ragward{name}" for name in DEFAULT_RULE_NAMES} <= names


def test_default_rules_file_still_matches() -> None:
    """If alerting/default_rules.yaml gains or renames a rule, this deploy mirror must follow."""
    path = REPO / "alerting" / "default_rules.yaml"
    if not path.exists():
        pytest.fail("alerting/default_rules.yaml is missing")
    defaults = {rule["name"] for rule in yaml.safe_load(path.read_text())["rules"]}
    assert defaults == DEFAULT_RULE_NAMES


def test_rules_use_only_the_fixed_metric_names() -> None:
    """Every ragward_* series a rule reads is one of the team's fixed metric names."""
    used: set[str] = set()
    for rule in rules():
        for name in re.findall(r"\bragward_[a-z0-9_]+", rule["expr"]):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert used
    assert used <= FIXED_METRICS, used - FIXED_METRICS


def test_recording_rules_are_defined_before_use() -> None:
    """Every ragward:* series an alert reads is recorded by a recording rule."""
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for alert in alerts():
        for name in re.findall(r"\bragward:[a-z0-9_:]+", alert["expr"]):
            assert name in recorded, (alert["alert"], name)


def test_alerts_carry_severity_and_a_runbook_that_exists() -> None:
    """Each alert has severity page|ticket and a runbook_url whose anchor is a heading in the
    operations guide."""
    text = OPERATIONS.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text.splitlines()
        if line.startswith("#")
    }
    for alert in alerts():
        assert alert["labels"]["severity"] in {"page", "ticket"}, alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url.startswith("README.md#"), url
        assert url.split("#", 1)[1] in anchors, (alert["alert"], url)


def test_scrape_jobs_match_the_target_down_alert() -> None:
    """Both scrape configs name their jobs ragward-*, which RagwardTargetDown watches."""
    for config in CONFIGS:
        jobs = {job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]}
        ragward_jobs = {job for job in jobs if job.startswith("ragward-")}
        assert {"ragward-gateway", "ragward-consumer-metrics", "ragward-consumer-alerts",
                "ragward-consumer-audit"} <= ragward_jobs, config
        metrics_job = next(
            job for job in yaml.safe_load(config.read_text())["scrape_configs"]
            if job["job_name"] == "ragward-consumer-metrics"
        )
        # the consumer's gauges carry the gateway's `instance`; it must survive the scrape
        assert metrics_job.get("honor_labels") is True, config
