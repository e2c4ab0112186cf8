"""The rule engine: Prometheus alerting semantics over a :class:`~alerting.view.MetricsView`.

Every evaluation queries each rule's metric and, per label set, moves an alert
through ``inactive → pending → firing → resolved``:

* condition true: a new alert is *pending*; once it has held for ``for`` it is
  *firing* (``for: 0s`` fires at once). Annotations are re-rendered with the
  latest value every evaluation.
* condition false (or no value / label set gone): a pending alert returns to
  *inactive*; a firing one keeps firing for ``keep_firing_for`` counted from the
  first false evaluation, then is *resolved*. Resolved alerts are kept for
  ``resolved_retention_s`` so the resolved notification can go out, then dropped.
* no decision (fewer than ``min_requests`` requests in the window): the alert
  keeps its state — a thin window can neither start nor end an incident.
* warm-up: until ``warmup_from`` + the rule's window has passed (the view was
  empty at start, e.g. after a restart), a missing label set or value is no
  decision either, so a restart mid-incident does not resolve what still fires.

Time comes only from the ``now`` passed in. The engine does no I/O beyond
``view.query``; the service persists :meth:`Engine.take_changes` and publishes
the returned transitions.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import structlog

from alerting import templates
from alerting.rules import Rule, RuleSet
from alerting.view import MetricsView, Sample, window_seconds

log = structlog.get_logger(__name__)

AlertState = Literal["pending", "firing", "resolved"]
TransitionState = Literal["inactive", "pending", "firing", "resolved"]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit identity of a label set (like Alertmanager's)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class Alert:
    rule: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: AlertState
    active_at: float
    """When the condition started to hold (pending since)."""
    fired_at: float | None = None
    """When it started firing: ``startsAt`` in notifications."""
    resolved_at: float | None = None
    """When it resolved: ``endsAt``."""
    keep_firing_since: float | None = None
    value: float | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", self.rule)


@dataclass(frozen=True)
class Transition:
    """One state change of one alert (published as an AlertEvent)."""

    alert: Alert
    previous: TransitionState
    state: TransitionState
    at: float


@dataclass(frozen=True)
class _Verdict:
    labels: dict[str, str]
    value: float | None
    holds: bool | None
    """True: condition met; False: not met; None: no decision (thin window)."""


@dataclass
class Engine:
    rules: RuleSet
    view: MetricsView
    resolved_retention_s: float = 900.0
    warmup_from: float | None = None
    """When the view started filling (service start); None: it has always been full."""
    _alerts: dict[str, Alert] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _removed: set[str] = field(default_factory=set)

    # -- state access ----------------------------------------------------------
    def alerts(self) -> list[Alert]:
        """Pending, firing and recently resolved alerts (copies)."""
        return [replace(alert) for alert in self._alerts.values()]

    def notifiable(self) -> list[Alert]:
        """Firing and recently resolved alerts: what the dispatcher groups."""
        return [replace(a) for a in self._alerts.values() if a.state != "pending"]

    def take_changes(self) -> tuple[list[Alert], list[str]]:
        """Alerts changed and fingerprints dropped since the last call, for persistence."""
        changed = [replace(self._alerts[fp]) for fp in self._dirty if fp in self._alerts]
        removed = sorted(self._removed)
        self._dirty.clear()
        self._removed.clear()
        return changed, removed

    def restore(self, alerts: Iterable[Alert], now: float) -> list[Transition]:
        """Adopt persisted alerts; those whose rule no longer exists are resolved or dropped."""
        transitions: list[Transition] = []
        for alert in alerts:
            rule = self.rules.rule(alert.rule)
            self._alerts[alert.fingerprint] = alert
            if rule is not None:
                continue
            if alert.state == "firing":
                self._resolve(alert, now, transitions)
            elif alert.state == "pending":
                self._drop(alert, now, transitions)
        return transitions

    # -- evaluation ------------------------------------------------------------
    def evaluate(self, now: float) -> list[Transition]:
        transitions: list[Transition] = []
        for rule in self.rules.rules:
            try:
                verdicts = self._burn_rate(rule, now) if rule.is_burn_rate else self._threshold(
                    rule, now)
            except Exception:
                # A failing query is no decision: keep every alert of this rule as it is.
                log.exception("alert_rule_query_failed", rule=rule.name, metric=rule.metric)
                continue
            self._apply(rule, verdicts, now, transitions)
        self._expire_resolved(now)
        return transitions

    def _expire_resolved(self, now: float) -> None:
        for key, alert in list(self._alerts.items()):
            if alert.state == "resolved" and alert.resolved_at is not None and (
                now - alert.resolved_at >= self.resolved_retention_s
            ):
                del self._alerts[key]
                self._dirty.discard(key)
                self._removed.add(key)

    def _labels(self, rule: Rule, sample_labels: Mapping[str, str]) -> dict[str, str]:
        return {**sample_labels, **rule.labels, "alertname": rule.name}

    def _query(self, rule: Rule, window: str, now: float) -> Sequence[Sample]:
        return self.view.query(rule.metric, window, list(rule.group_by), now=now)

    def _warming(self, rule: Rule, now: float) -> bool:
        if self.warmup_from is None:
            return False
        windows = [p.long for p in rule.windows] if rule.is_burn_rate else [rule.window]
        return now - self.warmup_from < max(window_seconds(w) for w in windows)

    def _threshold(self, rule: Rule, now: float) -> dict[str, _Verdict]:
        verdicts: dict[str, _Verdict] = {}
        compare = _COMPARE[rule.op]
        no_data = None if self._warming(rule, now) else False
        for sample in self._query(rule, rule.window, now):
            labels = self._labels(rule, sample.labels)
            value = sample.value
            holds: bool | None
            if value is None:
                holds = no_data
            elif sample.requests < rule.min_requests:
                holds = None
            else:
                holds = compare(value, rule.threshold)
            verdicts[fingerprint(labels)] = _Verdict(labels, value, holds)
        return verdicts

    def _burn_rate(self, rule: Rule, now: float) -> dict[str, _Verdict]:
        assert rule.slo is not None
        budget = 1.0 - rule.slo
        per_set: dict[str, tuple[dict[str, str], list[tuple[bool | None, float | None]]]] = {}
        no_data = None if self._warming(rule, now) else False
        for pair in rule.windows:
            longs = {fingerprint(s.labels): s for s in self._query(rule, pair.long, now)}
            shorts = {fingerprint(s.labels): s for s in self._query(rule, pair.short, now)}
            for key, long in longs.items():
                short = shorts.get(key)
                burn = None if long.value is None else long.value / budget
                holds: bool | None
                if burn is None:
                    holds = no_data
                elif long.requests < rule.min_requests:
                    holds = None
                elif short is None or short.value is None:
                    holds = no_data
                else:
                    holds = burn > pair.factor and short.value / budget > pair.factor
                entry = per_set.setdefault(key, (self._labels(rule, long.labels), []))
                entry[1].append((holds, burn))
        verdicts: dict[str, _Verdict] = {}
        for labels, outcomes in per_set.values():
            burns = [burn for _, burn in outcomes if burn is not None]
            met = [burn for holds, burn in outcomes if holds]
            overall: bool | None
            if met:
                overall, value = True, met[0]
            else:
                overall = None if any(h is None for h, _ in outcomes) else False
                value = max(burns) if burns else None
            verdicts[fingerprint(labels)] = _Verdict(labels, value, overall)
        return verdicts

    def _apply(self, rule: Rule, verdicts: dict[str, _Verdict], now: float,
               transitions: list[Transition]) -> None:
        for key, verdict in verdicts.items():
            alert = self._alerts.get(key)
            if verdict.holds is None:
                continue
            if not verdict.holds:
                if alert is not None:
                    self._condition_false(rule, alert, now, transitions)
                continue
            created = alert is None or alert.state == "resolved"
            if alert is None or alert.state == "resolved":
                alert = Alert(rule=rule.name, fingerprint=key, labels=verdict.labels,
                              annotations={}, state="pending", active_at=now)
                self._alerts[key] = alert
                self._removed.discard(key)
                self._dirty.add(key)
            alert.value = verdict.value
            alert.annotations = {
                name: templates.render(text, verdict.value, alert.labels)
                for name, text in rule.annotations.items()
            }
            if created and rule.for_s > 0:
                transitions.append(Transition(replace(alert), "inactive", "pending", now))
            if alert.keep_firing_since is not None:
                alert.keep_firing_since = None
                self._dirty.add(key)
            if alert.state == "pending" and now - alert.active_at >= rule.for_s:
                previous: TransitionState = "pending" if rule.for_s > 0 else "inactive"
                alert.state, alert.fired_at = "firing", now
                transitions.append(Transition(replace(alert), previous, "firing", now))
                self._dirty.add(key)
        if self._warming(rule, now):
            return  # a label set missing from a view still filling up says nothing
        for key, alert in list(self._alerts.items()):
            if alert.rule == rule.name and key not in verdicts:
                self._condition_false(rule, alert, now, transitions)

    def _condition_false(self, rule: Rule, alert: Alert, now: float,
                         transitions: list[Transition]) -> None:
        if alert.state == "pending":
            self._drop(alert, now, transitions)
        elif alert.state == "firing":
            if rule.keep_firing_for_s > 0:
                if alert.keep_firing_since is None:
                    alert.keep_firing_since = now
                    self._dirty.add(alert.fingerprint)
                if now - alert.keep_firing_since < rule.keep_firing_for_s:
                    return
            self._resolve(alert, now, transitions)

    def _resolve(self, alert: Alert, now: float, transitions: list[Transition]) -> None:
        alert.state, alert.resolved_at, alert.keep_firing_since = "resolved", now, None
        self._dirty.add(alert.fingerprint)
        transitions.append(Transition(replace(alert), "firing", "resolved", now))

    def _drop(self, alert: Alert, now: float, transitions: list[Transition]) -> None:
        del self._alerts[alert.fingerprint]
        self._removed.add(alert.fingerprint)
        self._dirty.discard(alert.fingerprint)
        transitions.append(Transition(replace(alert), "pending", "inactive", now))
