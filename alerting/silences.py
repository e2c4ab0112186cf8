"""Silences: label matchers plus a time window that mute notifications.

Matchers follow Alertmanager: ``label=value``, ``label!=value``, ``label=~regex``,
``label!~regex``; regexes are fully anchored and a missing label reads as the
empty string. A silence mutes an alert while ``starts_at <= now < ends_at`` and
every matcher matches. Silenced alerts still change state and are still
published on the alerts topic; only notifications are held back (a silenced
alert that resolves without ever being notified sends no resolved message).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: MatchOp
    value: str
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex``."""
        match = _MATCHER.match(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not a matcher (label=value, label!=value, label=~regex, label!~regex)"
            )
        name, op, value = match.group(1), match.group(2), match.group(3)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls.make(name, op, value)  # type: ignore[arg-type]

    @classmethod
    def make(cls, name: str, op: MatchOp, value: str) -> Matcher:
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(f"(?:{value})")
            except re.error as exc:
                raise ValueError(f"{name}{op}{value}: bad regex: {exc}") from None
        return cls(name, op, value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._pattern is not None
        found = self._pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    created_at: float = 0.0

    @classmethod
    def create(cls, matchers: Iterable[Matcher], starts_at: float, ends_at: float, *,
               created_by: str = "", comment: str = "", now: float) -> Silence:
        matchers = tuple(matchers)
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts")
        if all(m.matches({}) for m in matchers):
            raise ValueError("these matchers match every alert; name at least one label value")
        return cls(uuid.uuid4().hex, matchers, starts_at, ends_at, created_by, comment, now)

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.active(now) and all(m.matches(labels) for m in self.matchers)


def muted_by(silences: Iterable[Silence], labels: Mapping[str, str], now: float) -> list[str]:
    """Ids of the silences that mute ``labels`` at ``now``."""
    return [s.id for s in silences if s.mutes(labels, now)]
