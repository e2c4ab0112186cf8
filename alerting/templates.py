"""Annotation templates: ``{{ value }}`` and ``{{ labels.NAME }}``, nothing else.

Rendering escapes nothing: annotations are plain text, and each receiver escapes
them for its own medium (Slack mrkdwn, HTML email). Templates are checked when
the rules load, so a typo is a start-up error and never a blank notification.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_EXPRESSION = re.compile(r"^\s*(?:(value)|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*$")


def check(template: str) -> str | None:
    """Why ``template`` is invalid, or None when it is fine."""
    for match in _PLACEHOLDER.finditer(template):
        if not _EXPRESSION.match(match.group(1)):
            return (
                f"unknown template expression {match.group(0)!r}"
                " (use {{ value }} or {{ labels.NAME }})"
            )
    rest = _PLACEHOLDER.sub("", template)
    if "{{" in rest or "}}" in rest:
        return "unbalanced '{{' or '}}'"
    return None


def format_value(value: float | None) -> str:
    """A metric value as people read it: 4 significant digits, no exponent for usual sizes."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def render(template: str, value: float | None, labels: Mapping[str, str]) -> str:
    """Fill in a template already accepted by :func:`check`; missing labels render empty."""

    def substitute(match: re.Match[str]) -> str:
        expression = _EXPRESSION.match(match.group(1))
        if expression is None:  # not checked: leave it visible rather than guess
            return match.group(0)
        if expression.group(1):
            return format_value(value)
        return labels.get(expression.group(2), "")

    return _PLACEHOLDER.sub(substitute, template)
