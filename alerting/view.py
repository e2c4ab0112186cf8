"""The rolling-metrics query interface alerting consumes (telemetry implements it).

This is alerting's own copy of the protocol agreed in the team notes; it is
structural, so :class:`telemetry.rolling` (or any object with a matching
``query``) satisfies it without importing this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

METRICS: frozenset[str] = frozenset({
    "error_rate", "request_rate", "latency_p50", "latency_p95", "latency_p99",
    "tokens_avg", "tokens_total", "cost_total", "cache_hit_rate", "consumer_lag",
    "events_silence", "quota_degraded", "spool_fill_ratio",
})
"""Metric names a rule may use (team notes, "Rolling-metrics query interface")."""

WINDOWS: frozenset[str] = frozenset({"1m", "5m", "1h"})
GROUP_BY_LABELS: frozenset[str] = frozenset({"tenant", "route", "model", "status_class"})


class SampleLike(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def value(self) -> float | None: ...

    @property
    def requests(self) -> int: ...


@dataclass(frozen=True)
class Sample:
    """One value of a metric for one label set over one window."""

    labels: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    requests: int = 0


class MetricsView(Protocol):
    def query(
        self, metric: str, window: str, group_by: Sequence[str], now: float | None = None
    ) -> Sequence[SampleLike]:
        """One sample per label set of ``group_by`` (``[]``: one global sample)."""
        ...
