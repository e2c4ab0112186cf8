"""What alerting reads: the rolling-metrics query interface telemetry implements.

:class:`telemetry.rolling.MetricsView` is the protocol (``query(metric, window,
group_by, now)`` → samples with ``labels``, ``value``, ``requests``);
:class:`telemetry.rolling.RollingMetrics` implements it. This module adds what
rule validation needs to know about it: the metric names, the windows, and the
labels each metric can be grouped by.
"""

from __future__ import annotations

from telemetry.rolling import (
    DIMENSIONS,
    METRICS,
    REQUEST_METRICS,
    USAGE_METRICS,
    WINDOWS,
    MetricsView,
    Sample,
)

__all__ = ["METRICS", "WINDOWS", "MetricsView", "Sample", "group_by_labels", "window_seconds"]

_GROUP_BY: dict[str, frozenset[str]] = {
    **{metric: frozenset(DIMENSIONS) for metric in REQUEST_METRICS | USAGE_METRICS},
    "quota_degraded": frozenset({"instance", "control"}),
    "spool_fill_ratio": frozenset({"instance"}),
    "consumer_lag": frozenset(),
    "events_silence": frozenset(),
}


def group_by_labels(metric: str) -> frozenset[str]:
    """The labels ``metric`` can be grouped by (an empty set: one global sample only)."""
    return _GROUP_BY.get(metric, frozenset())


def window_seconds(window: str) -> float:
    return WINDOWS[window]
