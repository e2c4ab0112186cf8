"""Alert rules: the documented format, validation errors that name the rule and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting import templates
from alerting.rules import load_rules, parse_duration
from ragward.errors import ConfigError
from tests.alert_helpers import rules_from_yaml

GOOD = """
rules:
  - name: HighErrorRate
    metric: error_rate
    window: 1m
    op: ">"
    threshold: 0.05
    min_requests: 20
    group_by: [tenant]
    for: 30s
    keep_firing_for: 0s
    labels: {severity: page}
    annotations: {summary: "error rate {{ value }} for {{ labels.tenant }}"}
routing:
  group_by: [alertname, tenant]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 4h
  receivers: [slack, email, webhook]
  send_resolved: true
"""


def _refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        rules_from_yaml(text)
    return str(info.value)


def test_contract_example_loads_with_every_key() -> None:
    """The docs/alerting.md example parses into the values it spells out."""
    ruleset = rules_from_yaml(GOOD)
    rule = ruleset.rules[0]
    assert (rule.name, rule.metric, rule.window, rule.op, rule.threshold) == (
        "HighErrorRate", "error_rate", "1m", ">", 0.05)
    assert (rule.min_requests, rule.group_by, rule.for_s, rule.keep_firing_for_s) == (
        20, ("tenant",), 30.0, 0.0)
    assert rule.labels == {"severity": "page"}
    routing = ruleset.routing
    assert (routing.group_wait_s, routing.group_interval_s, routing.repeat_interval_s) == (
        10.0, 60.0, 14400.0)
    assert routing.receivers == ("slack", "email", "webhook") and routing.send_resolved


def test_misspelt_key_in_a_file_is_refused_naming_rule_and_key(tmp_path: Path) -> None:
    """A typo ("treshold") in the rules file stops start-up naming variable, rule and key."""
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD.replace("threshold: 0.05", "treshold: 0.05"))
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = str(info.value)
    assert 'rule "HighErrorRate": unknown key "treshold"' in message
    assert 'did you mean "threshold"' in message
    assert "RAGWARD_ALERT_RULES" in message and str(path) in message


def test_unknown_metric_is_refused() -> None:
    """A metric the MetricsView does not offer is an error naming the rule and the metric."""
    message = _refused(GOOD.replace("metric: error_rate", "metric: error_ratio"))
    assert 'rule "HighErrorRate": unknown metric "error_ratio"' in message
    assert 'did you mean "error_rate"' in message


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("window: 1m", "window: 2m", 'key "window": \'2m\' is not one of 1h, 1m, 5m'),
    ('op: ">"', 'op: "=>"', 'key "op"'),
    ("for: 30s", "for: 30 seconds", 'key "for"'),
    ("for: 30s", "for: 30", 'key "for"'),
    ("keep_firing_for: 0s", "keep_firing_for: soon", 'key "keep_firing_for"'),
    ("threshold: 0.05", "threshold: high", 'key "threshold"'),
    ("threshold: 0.05", "", 'missing key "threshold"'),
    ("min_requests: 20", "min_requests: -1", 'key "min_requests"'),
    ("group_by: [tenant]", "group_by: [customer]", 'key "group_by": unknown label "customer"'),
    ("{severity: page}", "{alertname: x}", 'key "labels"'),
    ("{{ labels.tenant }}", "{{ $labels.tenant }}", 'key "annotations.summary"'),
    ("{{ value }}", "{{ value", 'key "annotations.summary"'),
])
def test_bad_values_are_refused_naming_rule_and_key(old: str, new: str, expected: str) -> None:
    """Each malformed value names the rule and the offending key."""
    assert old in GOOD
    message = _refused(GOOD.replace(old, new, 1))
    assert 'rule "HighErrorRate"' in message
    assert expected in message


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("  group_wait: 10s", "  group_wiat: 10s", 'routing: unknown key "group_wiat"'),
    ("receivers: [slack, email, webhook]", "receivers: [pager]", 'key "receivers"'),
    ("repeat_interval: 4h", "repeat_interval: 0s", 'key "repeat_interval"'),
    ("send_resolved: true", "send_resolved: yes please", 'key "send_resolved"'),
    ("routing:", "routes:\n  x: 1\nrouting:", 'unknown key "routes"'),
])
def test_bad_routing_is_refused(old: str, new: str, expected: str) -> None:
    """Routing mistakes and unknown top-level keys are refused with the key's name."""
    assert expected in _refused(GOOD.replace(old, new, 1))


def test_duplicate_and_nameless_rules_are_refused() -> None:
    """Two rules with one name, or a rule without a name, cannot load."""
    twice = GOOD.replace("routing:", GOOD.split("rules:\n")[1].split("routing:")[0] + "routing:")
    assert 'rule "HighErrorRate": key "name": defined twice' in _refused(twice)
    assert 'rule #1: missing key "name"' in _refused(GOOD.replace("name: HighErrorRate", "x: 1"))


def test_not_yaml_and_missing_file_are_refused(tmp_path: Path) -> None:
    """Broken YAML and an unreadable path are config errors naming the variable."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n  - name: x\n    metric: [")
    with pytest.raises(ConfigError, match=r"RAGWARD_ALERT_RULES .*not valid YAML at line"):
        load_rules(broken)
    with pytest.raises(ConfigError, match="RAGWARD_ALERT_RULES: cannot read"):
        load_rules(tmp_path / "absent.yaml")


BURN = """
rules:
  - name: Burn
    slo: 0.999
    windows:
      - {long: 1h, short: 5m, factor: 14.4}
"""


def test_burn_rate_rule_keys_are_validated() -> None:
    """slo/windows rules: metric defaults to error_rate; bad pairs and stray keys are refused."""
    rule = rules_from_yaml(BURN).rules[0]
    assert rule.is_burn_rate and rule.metric == "error_rate" and rule.slo == 0.999
    assert rule.windows[0].long == "1h" and rule.windows[0].factor == 14.4
    assert 'key "threshold" does not apply to a burn-rate rule' in _refused(
        BURN + "    threshold: 1\n")
    assert 'key "slo": 1.5 must be between 0 and 1' in _refused(BURN.replace("0.999", "1.5"))
    assert 'windows[0]: unknown key "lng"' in _refused(BURN.replace("long:", "lng:"))
    assert 'key "windows[0].short"' in _refused(BURN.replace("short: 5m", "short: 10m"))
    assert "short window 1h is longer than long 5m" in _refused(
        BURN.replace("long: 1h, short: 5m", "long: 5m, short: 1h"))
    assert 'burn-rate rules need metric "error_rate"' in _refused(
        BURN.replace("slo:", "metric: latency_p99\n    slo:"))
    assert 'missing key "slo"' in _refused(BURN.replace("    slo: 0.999\n", ""))


def test_default_rules_cover_the_production_guide() -> None:
    """Without a file: error rate > 5 %, p99 > 10 s, tokens/request > 5,000, burn rates,
    dead-man's switch, consumer lag, degraded quota control and spool filling."""
    ruleset = load_rules(None)
    by_metric = {(r.metric, r.threshold) for r in ruleset.rules if not r.is_burn_rate}
    assert {("error_rate", 0.05), ("latency_p99", 10.0), ("tokens_avg", 5000.0),
            ("events_silence", 600.0), ("spool_fill_ratio", 0.8)} <= by_metric
    metrics = {r.metric for r in ruleset.rules}
    assert {"consumer_lag", "quota_degraded"} <= metrics
    burns = [r for r in ruleset.rules if r.is_burn_rate]
    assert {(r.slo, r.windows[0].long, r.windows[0].short, r.windows[0].factor) for r in burns} == {
        (0.999, "1h", "5m", 14.4), (0.999, "1h", "5m", 6.0)}
    assert ruleset.source == "default rules"


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("0", 0),
    ("2d", 172800),
])
def test_durations(text: str, seconds: float) -> None:
    """Prometheus-style durations parse to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "5mm", "1.5.2s", True, None])
def test_bad_durations(text: object) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError):
        parse_duration(text)


def test_template_rendering_escapes_nothing() -> None:
    """{{ value }} and {{ labels.x }} are filled in raw; missing labels render empty."""
    rendered = templates.render("v={{ value }} t={{labels.tenant}} m={{ labels.none }}", 0.083333,
                                {"tenant": "<acme & co>"})
    assert rendered == "v=0.08333 t=<acme & co> m="
    assert templates.render("{{ value }}", 12.0, {}) == "12"
    assert templates.render("{{ value }}", None, {}) == "NaN"


def test_group_by_labels_depend_on_the_metric() -> None:
    """Gateway-status metrics group by instance/control; global ones cannot be grouped."""
    ok = rules_from_yaml(GOOD.replace("metric: error_rate", "metric: quota_degraded")
                         .replace("group_by: [tenant]", "group_by: [instance, control]"))
    assert ok.rules[0].group_by == ("instance", "control")
    message = _refused(GOOD.replace("metric: error_rate", "metric: events_silence"))
    assert 'key "group_by": unknown label "tenant"' in message
