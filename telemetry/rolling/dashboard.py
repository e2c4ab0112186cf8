"""The metrics consumer's dashboard: every window per tenant, and an hour of history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telemetry.rolling.figures import WINDOWS, Aggregate

if TYPE_CHECKING:
    from telemetry.rolling.view import RollingMetrics

__all__ = ["series", "snapshot"]


def snapshot(view: RollingMetrics, now: float, *, lag: int | None = None) -> dict[str, Any]:
    """Per-tenant figures for every window and an hour of per-minute history."""
    windows: dict[str, dict[str, Any]] = {}
    overall: dict[str, Any] = {}
    for window in WINDOWS:
        per_tenant = view.aggregate(window, ["tenant"], now)
        windows[window] = {g[0]: a.figures() for g, a in sorted(per_tenant.items())}
        total = view.aggregate(window, [], now).get(())
        overall[window] = (total or Aggregate(1.0)).figures()
    return {
        "now": now,
        "windows": windows,
        "overall": overall,
        "series": series(view, now),
        "status": view.status.view(),
        "consumer": {
            "events": view.events,
            "lag": lag if lag is not None else (view.lag_source() if view.lag_source else None),
            "last_event_ts": view.last_event_ts,
            "silence_s": now - (view.last_event_ts or view.started_at),
        },
    }


def series(view: RollingMetrics, now: float, points: int = 60) -> dict[str, Any]:
    """Per-tenant per-minute history of the last ``points`` minutes (the 1 h tier)."""
    tier = view.tiers["1h"]
    last = int(now // tier.resolution)
    indexes = range(last - points + 1, last + 1)
    tenants = sorted({key[0] for i in indexes for key in tier.buckets.get(i, {})})
    names = ("request_rate", "error_rate", "latency_p50", "latency_p99", "tokens_total",
             "cost_total")
    out: dict[str, dict[str, list[float | None]]] = {
        t: {n: [] for n in names} for t in tenants
    }
    for index in indexes:
        start = index * tier.resolution
        span = min(tier.resolution, max(1.0, now - start))
        per_tenant: dict[str, Aggregate] = {}
        for key, cell in tier.buckets.get(index, {}).items():
            agg = per_tenant.get(key[0])
            if agg is None:
                agg = per_tenant[key[0]] = Aggregate(span)
            agg.add(cell)
        for tenant in tenants:
            agg = per_tenant.get(tenant)
            series = out[tenant]
            for name in names:
                if agg is None:
                    series[name].append(0.0 if name in ("request_rate", "tokens_total",
                                                        "cost_total") else None)
                else:
                    series[name].append(agg.value(name))
    return {
        "resolution_s": tier.resolution,
        "t": [i * tier.resolution for i in indexes],
        "tenants": out,
    }
