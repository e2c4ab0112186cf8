"""Helpers for alerting tests: a scripted MetricsView (a test double of OUR interface).

:class:`ScriptedView` answers ``query`` with whatever the test set for a
metric and window, and records every query, so engine tests decide exactly what
the rolling metrics say at each step of the injectable clock.
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from alerting.rules import RuleSet, parse_rules
from alerting.view import Sample

ALL_WINDOWS = ("1m", "5m", "1h")


class ScriptedView:
    def __init__(self) -> None:
        self._samples: dict[tuple[str, str], list[Sample]] = {}
        self.queries: list[tuple[str, str, tuple[str, ...], float | None]] = []

    def set(self, metric: str, *samples: Sample, windows: Sequence[str] = ALL_WINDOWS) -> None:
        """From now on, ``metric`` over each of ``windows`` is ``samples``."""
        for window in windows:
            self._samples[(metric, window)] = list(samples)

    def clear(self, metric: str, windows: Sequence[str] = ALL_WINDOWS) -> None:
        for window in windows:
            self._samples.pop((metric, window), None)

    def query(self, metric: str, window: str, group_by: Sequence[str],
              now: float | None = None) -> list[Sample]:
        self.queries.append((metric, window, tuple(group_by), now))
        return list(self._samples.get((metric, window), []))


# docs/alerting.md's example rule, with a 1 h repeat: the incident most tests drive.
ERROR_RATE_RULES = """
rules:
  - name: HighErrorRate
    metric: error_rate
    window: 1m
    op: ">"
    threshold: 0.05
    min_requests: 20
    group_by: [tenant]
    for: 30s
    labels: {severity: page}
    annotations: {summary: "error rate {{ value }} for {{ labels.tenant }}"}
routing:
  group_by: [alertname, tenant]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 1h
  receivers: [slack, email, webhook]
  send_resolved: true
"""


def rules_from_yaml(text: str) -> RuleSet:
    return parse_rules(yaml.safe_load(text), "test")


def error_rate(tenant: str, value: float, requests: int = 100) -> Sample:
    return Sample(labels={"tenant": tenant}, value=value, requests=requests)
