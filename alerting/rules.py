"""Alert rules and routing: load the YAML (docs/alerting.md), validate it, apply defaults.

Every mistake is a :class:`~ragward.errors.ConfigError` that names the variable,
the rule and the key, e.g.
``RAGWARD_ALERT_RULES (rules.yaml): rule "HighErrorRate": unknown key "treshold"
(did you mean "threshold"?)``. Without a rules file the packaged
``default_rules.yaml`` is used.

Two kinds of rule share the format:

* **threshold** — ``metric`` over ``window`` compared with ``threshold`` by ``op``;
* **burn-rate** — an availability SLO (``slo: 0.999``) and ``windows``: a list of
  ``{long, short, factor}``; the rule is true when the error-budget burn rate
  (``error_rate / (1 - slo)``) exceeds ``factor`` over *both* windows of any
  pair. ``op``, ``threshold`` and ``window`` do not apply to it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from alerting import templates, view
from ragward.errors import ConfigError

Op = Literal[">", ">=", "<", "<="]
OPS: tuple[str, ...] = (">", ">=", "<", "<=")
RECEIVERS: tuple[str, ...] = ("slack", "email", "webhook")

RULE_KEYS = frozenset({
    "name", "metric", "window", "op", "threshold", "min_requests", "group_by", "for",
    "keep_firing_for", "labels", "annotations", "slo", "windows",
})
BURN_WINDOW_KEYS = frozenset({"long", "short", "factor"})
ROUTING_KEYS = frozenset({
    "group_by", "group_wait", "group_interval", "repeat_interval", "receivers", "send_resolved",
})
TOP_KEYS = frozenset({"rules", "routing"})

METRICS = frozenset(view.METRICS)
WINDOWS = frozenset(view.WINDOWS)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ENV = "RAGWARD_ALERT_RULES"


def parse_duration(text: object) -> float:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"0"`` → seconds; ValueError otherwise."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h")
    if isinstance(text, int) or text.strip() == "0":
        if int(text) != 0:
            raise ValueError(f"{text!r} needs a unit (30s, 5m, 1h)")
        return 0.0
    compact = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(compact):
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h")
    return total


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window pair: both windows must burn faster than ``factor``."""

    long: str
    short: str
    factor: float


@dataclass(frozen=True, eq=False)
class Rule:
    name: str
    metric: str
    window: str = "1m"
    op: Op = ">"
    threshold: float = 0.0
    min_requests: int = 0
    group_by: tuple[str, ...] = ()
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    slo: float | None = None
    windows: tuple[BurnWindow, ...] = ()

    @property
    def is_burn_rate(self) -> bool:
        return self.slo is not None


@dataclass(frozen=True)
class Routing:
    """Alertmanager-style grouping for every rule (one route)."""

    group_by: tuple[str, ...] = ("alertname", "tenant")
    group_wait_s: float = 10.0
    group_interval_s: float = 60.0
    repeat_interval_s: float = 4 * 3600.0
    receivers: tuple[str, ...] = RECEIVERS
    send_resolved: bool = True


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    routing: Routing
    source: str

    def rule(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


class _Problem(Exception):
    """A validation failure inside one rule; turned into ConfigError with context."""


def _suggest(key: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _check_keys(data: Mapping[str, Any], known: frozenset[str], where: str = "") -> None:
    for key in data:
        if key not in known:
            raise _Problem(f'{where}unknown key "{key}"{_suggest(str(key), known)}')


def _number(data: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if value is None:
        raise _Problem(f'missing key "{key}"')
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Problem(f'key "{key}": {value!r} is not a number')
    return float(value)


def _duration(data: Mapping[str, Any], key: str, default: str) -> float:
    try:
        return parse_duration(data.get(key, default))
    except ValueError as exc:
        raise _Problem(f'key "{key}": {exc}') from None


def _window(value: Any, key: str) -> str:
    if value not in WINDOWS:
        raise _Problem(f'key "{key}": {value!r} is not one of {", ".join(sorted(WINDOWS))}')
    return str(value)


def _string_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise _Problem(f'key "{key}": must be a mapping of names to strings')
    result: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _LABEL_NAME.match(name):
            raise _Problem(f'key "{key}": {name!r} is not a valid label name')
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _Problem(f'key "{key}.{name}": {item!r} is not a string')
        result[name] = str(item)
    return result


def _label_list(data: Mapping[str, Any], key: str, allowed: frozenset[str] | None,
                default: tuple[str, ...]) -> tuple[str, ...]:
    value = data.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Problem(f'key "{key}": must be a list of label names')
    for item in value:
        if allowed is not None and item not in allowed:
            choices = (f'one of {", ".join(sorted(allowed))}' if allowed
                       else "this metric has one global sample: leave group_by empty")
            raise _Problem(f'key "{key}": unknown label "{item}" ({choices})')
        if not _LABEL_NAME.match(item):
            raise _Problem(f'key "{key}": {item!r} is not a valid label name')
    if len(set(value)) != len(value):
        raise _Problem(f'key "{key}": repeats a label')
    return tuple(value)


def _burn_windows(value: Any) -> tuple[BurnWindow, ...]:
    if not isinstance(value, list) or not value:
        raise _Problem('key "windows": must be a non-empty list of {long, short, factor}')
    pairs = []
    for index, item in enumerate(value):
        where = f"windows[{index}]"
        if not isinstance(item, Mapping):
            raise _Problem(f'key "{where}": must be a mapping with long, short, factor')
        _check_keys(item, BURN_WINDOW_KEYS, f"{where}: ")
        for key in ("long", "short", "factor"):
            if key not in item:
                raise _Problem(f'{where}: missing key "{key}"')
        long = _window(item["long"], f"{where}.long")
        short = _window(item["short"], f"{where}.short")
        factor = _number(item, "factor")
        if factor <= 0:
            raise _Problem(f'key "{where}.factor": must be above 0')
        if parse_duration(short) > parse_duration(long):
            raise _Problem(f'key "{where}": short window {short} is longer than long {long}')
        pairs.append(BurnWindow(long=long, short=short, factor=factor))
    return tuple(pairs)


def _rule(data: Mapping[str, Any]) -> Rule:
    _check_keys(data, RULE_KEYS)
    name = data["name"]
    burn = "slo" in data or "windows" in data
    metric = data.get("metric", "error_rate" if burn else None)
    if metric is None:
        raise _Problem('missing key "metric"')
    if metric not in METRICS:
        raise _Problem(
            f'unknown metric "{metric}"{_suggest(str(metric), METRICS)}'
            f" (one of {', '.join(sorted(METRICS))})"
        )
    min_requests = data.get("min_requests", 0)
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 0:
        raise _Problem(f'key "min_requests": {min_requests!r} is not a whole number >= 0')
    labels = _string_map(data, "labels")
    if "alertname" in labels:
        raise _Problem('key "labels": "alertname" is set from the rule\'s name')
    annotations = _string_map(data, "annotations")
    for key, text in annotations.items():
        problem = templates.check(text)
        if problem:
            raise _Problem(f'key "annotations.{key}": {problem}')
    common: dict[str, Any] = {
        "name": name,
        "metric": metric,
        "min_requests": min_requests,
        "group_by": _label_list(data, "group_by", view.group_by_labels(metric), ()),
        "for_s": _duration(data, "for", "0s"),
        "keep_firing_for_s": _duration(data, "keep_firing_for", "0s"),
        "labels": labels,
        "annotations": annotations,
    }
    if burn:
        for key in ("op", "threshold", "window"):
            if key in data:
                raise _Problem(
                    f'key "{key}" does not apply to a burn-rate rule (set windows[].factor)'
                )
        if metric != "error_rate":
            raise _Problem('key "slo": burn-rate rules need metric "error_rate"')
        if "slo" not in data:
            raise _Problem('missing key "slo" (the availability objective, e.g. 0.999)')
        slo = _number(data, "slo")
        if not 0 < slo < 1:
            raise _Problem(f'key "slo": {slo} must be between 0 and 1 (e.g. 0.999)')
        return Rule(**common, slo=slo, windows=_burn_windows(data.get("windows")))
    op = data.get("op", ">")
    if op not in OPS:
        raise _Problem(f'key "op": {op!r} is not one of {" ".join(OPS)}')
    return Rule(
        **common,
        window=_window(data.get("window", "1m"), "window"),
        op=op,
        threshold=_number(data, "threshold"),
    )


def _routing(data: Any) -> Routing:
    if data is None:
        return Routing()
    if not isinstance(data, Mapping):
        raise _Problem("must be a mapping")
    _check_keys(data, ROUTING_KEYS)
    defaults = Routing()
    receivers = _label_list(data, "receivers", frozenset(RECEIVERS), defaults.receivers)
    send_resolved = data.get("send_resolved", defaults.send_resolved)
    if not isinstance(send_resolved, bool):
        raise _Problem(f'key "send_resolved": {send_resolved!r} is not true or false')
    routing = Routing(
        group_by=_label_list(data, "group_by", None, defaults.group_by),
        group_wait_s=_duration(data, "group_wait", "10s"),
        group_interval_s=_duration(data, "group_interval", "1m"),
        repeat_interval_s=_duration(data, "repeat_interval", "4h"),
        receivers=receivers,
        send_resolved=send_resolved,
    )
    for key, value in (("group_interval", routing.group_interval_s),
                       ("repeat_interval", routing.repeat_interval_s)):
        if value <= 0:
            raise _Problem(f'key "{key}": must be longer than 0s')
    return routing


def parse_rules(data: Any, source: str) -> RuleSet:
    """Validate a parsed YAML document; ConfigError names ``source``, the rule and the key."""
    prefix = f"{_ENV} ({source})"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping with 'rules' and 'routing'")
    unknown = [key for key in data if key not in TOP_KEYS]
    if unknown:
        hint = _suggest(str(unknown[0]), TOP_KEYS)
        raise ConfigError(f'{prefix}: unknown key "{unknown[0]}"{hint}')
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError(f'{prefix}: "rules" must be a non-empty list')
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, item in enumerate(raw_rules):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or not isinstance(name, str) or not name:
            raise ConfigError(f'{prefix}: rule #{index + 1}: missing key "name"')
        where = f'{prefix}: rule "{name}"'
        if not _LABEL_NAME.match(name):
            raise ConfigError(
                f'{where}: key "name": must match [A-Za-z_][A-Za-z0-9_]* (it becomes alertname)')
        if name in seen:
            raise ConfigError(f'{where}: key "name": defined twice')
        seen.add(name)
        try:
            rules.append(_rule(item))
        except _Problem as exc:
            raise ConfigError(f"{where}: {exc}") from None
    try:
        routing = _routing(data.get("routing"))
    except _Problem as exc:
        raise ConfigError(f"{prefix}: routing: {exc}") from None
    return RuleSet(rules=tuple(rules), routing=routing, source=source)


def default_rules_text() -> str:
    return resources.files("alerting").joinpath("default_rules.yaml").read_text("utf-8")


def load_rules(path: Path | None) -> RuleSet:
    """The rules in ``path`` (``settings.alert_rules``), or the packaged defaults."""
    if path is None:
        return parse_rules(yaml.safe_load(default_rules_text()), "default rules")
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{_ENV}: cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{_ENV} ({path}): not valid YAML{at}") from None
    return parse_rules(data, str(path))
