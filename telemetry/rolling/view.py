"""The metrics consumer's state: events in, windows and totals out.

:class:`RollingMetrics` ingests audit, usage and status events into the tiers
(:mod:`~telemetry.rolling.tiers`), the Prometheus totals
(:mod:`~telemetry.rolling.totals`) and the instances' reports
(:mod:`~telemetry.rolling.instances`); it answers window queries
(:class:`~telemetry.rolling.figures.MetricsView`, which alerting reads), merges
with other consumers' state, and hands the dashboard its view
(:mod:`~telemetry.rolling.dashboard`).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog

from telemetry.events import AuditEvent, Event, StatusEvent, UsageEvent
from telemetry.rolling import dashboard
from telemetry.rolling.decode import MetricsAudit, MetricsEvent, MetricsStatus, MetricsUsage
from telemetry.rolling.figures import (
    DIMENSIONS,
    METRICS,
    STATUS_METRICS,
    USAGE_METRICS,
    WINDOWS,
    Aggregate,
    Cell,
    Key,
    Sample,
    new_sketch,
)
from telemetry.rolling.instances import Instances, InstanceStatus
from telemetry.rolling.tiers import new_tiers
from telemetry.rolling.totals import Totals

__all__ = ["MAX_FUTURE_SKEW_S", "RollingMetrics", "status_class"]

log = structlog.get_logger(__name__)

MAX_FUTURE_SKEW_S = 60.0


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def _event_time(ts: str, now: float) -> float:
    """The event's own time, at most MAX_FUTURE_SKEW_S ahead of ``now``; now if unreadable."""
    try:
        moment = datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return now
    return min(moment, now + MAX_FUTURE_SKEW_S)


MAX_REJECTIONS = 100_000  # times remembered for events_rejected (a flood must stay bounded)


class RollingMetrics:
    """The metrics consumer's state; implements :class:`MetricsView`."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        max_series: int = 5000,
        lag_source: Callable[[], int | None] | None = None,
    ) -> None:
        self.clock = clock
        self.max_series = max_series
        self.lag_source = lag_source
        self.tiers = new_tiers()
        self._tiers = tuple(self.tiers.values())
        self.totals = Totals()
        self.status = Instances()
        self.started_at = clock()
        self.last_event_ts: float | None = None
        self.events = 0
        # when events failed signature verification (events_rejected: ForgedEvents alert)
        self.rejections: collections.deque[float] = collections.deque(maxlen=MAX_REJECTIONS)
        self._keys: set[Key] = set()
        self._overflowed = False

    def note_rejected(self, *_: object) -> None:
        """An event failed verification now (the consumer loop's ``rejected`` hook)."""
        self.rejections.append(self.clock())

    # -- ingest -----------------------------------------------------------------
    def ingest(self, events: Iterable[Event | MetricsEvent]) -> None:
        """Add events (full types from telemetry.events or the lean Metrics* ones);
        other events (alerts) are skipped. An event's time is its ``ts``, capped at
        ``MAX_FUTURE_SKEW_S`` ahead of the clock; an unreadable ``ts`` counts as now."""
        now = self.clock()
        for event in events:
            # the lean types first: the metrics consumer decodes those
            match event:
                case MetricsAudit() | AuditEvent():
                    ts = _event_time(event.ts, now)
                    self._audit(event, ts)
                case MetricsUsage() | UsageEvent():
                    ts = _event_time(event.ts, now)
                    self._usage(event, ts)
                case MetricsStatus() | StatusEvent():
                    ts = _event_time(event.ts, now)
                    self.status.report(event.instance, InstanceStatus(
                        ts, dict(event.quota_degraded), event.spool_bytes,
                        event.spool_capacity_bytes,
                    ), now)
                case _:
                    continue
            self.events += 1
            if self.last_event_ts is None or ts > self.last_event_ts:
                self.last_event_ts = ts

    def _key(self, tenant: str, route: str, model: str, klass: str) -> Key:
        key = (tenant, route, model, klass)
        if key not in self._keys:
            if len(self._keys) >= self.max_series:
                if not self._overflowed:
                    self._overflowed = True
                    log.warning("rolling.series_limit", max_series=self.max_series)
                return ("__other__", "__other__", model if model == "-" else "__other__", klass)
            self._keys.add(key)
        return key

    def _audit(self, e: AuditEvent | MetricsAudit, ts: float) -> None:
        chat = e.chat
        if chat is not None and chat.phase == "start":
            return  # a stream's opening record: the request counts once, at its end
        ttft = chat.ttft_ms / 1000.0 if chat is not None and chat.ttft_ms is not None else None
        klass = status_class(e.status)
        key = self._key(e.tenant, e.route, "-", klass)
        seconds = e.latency_ms / 1000.0 if e.latency_ms > 0 else 0.0
        if ttft is not None and chat is not None and chat.streamed:
            seconds = ttft  # a stream's latency is its wait for the answer, not its length
        error = 1 if klass == "5xx" else 0
        for tier in self._tiers:
            cell = tier.cell(ts, key)
            if cell is None:
                continue
            cell.requests += 1
            cell.errors += error
            sketch = cell.latency
            if sketch is None:
                sketch = cell.latency = new_sketch()
            sketch.add(seconds)
            cell.latency_sum += seconds
            if ttft is not None:
                if cell.ttft is None:
                    cell.ttft = new_sketch()
                cell.ttft.add(ttft)
        self.totals.add_request(key[0], key[1], klass, seconds)

    def _usage(self, e: UsageEvent | MetricsUsage, ts: float) -> None:
        key = self._key(e.tenant, e.route, e.model or "-", status_class(e.status))
        hit = 1 if e.cached else 0
        for tier in self._tiers:
            cell = tier.cell(ts, key)
            if cell is None:
                continue
            cell.usage += 1
            cell.prompt += e.prompt_tokens
            cell.completion += e.completion_tokens
            cell.embedding += e.embedding_tokens
            cell.cost += e.cost_usd
            cell.hits += hit
        tokens = {"prompt": e.prompt_tokens, "completion": e.completion_tokens,
                  "embedding": e.embedding_tokens}
        self.totals.add_usage(key[0], key[2], tokens, e.cost_usd, hit=bool(hit))

    # -- merging ----------------------------------------------------------------
    def merge(self, other: RollingMetrics) -> None:
        """Add another instance's state (e.g. consumers of one group) into this one."""
        for name, tier in self.tiers.items():
            theirs = other.tiers[name]
            for index, bucket in theirs.buckets.items():
                mine = tier.buckets.setdefault(index, {})
                for key, cell in bucket.items():
                    mine.setdefault(key, Cell()).merge(cell)
            tier.newest = max(tier.newest, theirs.newest)
        self.totals.merge(other.totals)
        self.status.merge(other.status)
        if other.last_event_ts is not None and (
            self.last_event_ts is None or other.last_event_ts > self.last_event_ts
        ):
            self.last_event_ts = other.last_event_ts
        self.events += other.events
        self._keys |= other._keys

    @classmethod
    def merged(cls, views: Sequence[RollingMetrics]) -> RollingMetrics:
        out = cls(views[0].clock if views else time.time)
        for view in views:
            out.merge(view)
        return out

    # -- queries ----------------------------------------------------------------
    def aggregate(
        self, window: str, group_by: Sequence[str], now: float | None = None,
        *, where: Callable[[Key], bool] | None = None,
    ) -> dict[tuple[str, ...], Aggregate]:
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}; use one of {sorted(WINDOWS)}")
        positions = []
        for name in group_by:
            if name not in DIMENSIONS:
                raise ValueError(f"cannot group by {name!r}; use {list(DIMENSIONS)}")
            positions.append(DIMENSIONS.index(name))
        now = self.clock() if now is None else now
        tier = self.tiers[window]
        indexes, span = tier.window(now, WINDOWS[window])
        groups: dict[tuple[str, ...], Aggregate] = {}
        for index in indexes:
            bucket = tier.buckets.get(index)
            if not bucket:
                continue
            for key, cell in bucket.items():
                if where is not None and not where(key):
                    continue
                group = tuple(key[p] for p in positions)
                agg = groups.get(group)
                if agg is None:
                    agg = groups[group] = Aggregate(span)
                agg.add(cell)
        return groups

    def query(
        self, metric: str, window: str, group_by: Sequence[str], now: float | None = None
    ) -> list[Sample]:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {sorted(METRICS)}")
        now = self.clock() if now is None else now
        if metric in STATUS_METRICS:
            return self._status_query(metric, window, group_by, now)
        groups = self.aggregate(window, group_by, now)
        usage_metric = metric in USAGE_METRICS
        samples = []
        for group, agg in sorted(groups.items()):
            count = agg.cells.usage if usage_metric else agg.cells.requests
            if count == 0:
                continue
            samples.append(Sample(dict(zip(group_by, group, strict=True)), agg.value(metric),
                                  count))
        if not samples and not group_by:
            empty = Aggregate(self.tiers[window].window(now, WINDOWS[window])[1])
            samples.append(Sample({}, empty.value(metric), 0))
        return samples

    def _status_query(
        self, metric: str, window: str, group_by: Sequence[str], now: float
    ) -> list[Sample]:
        if metric == "consumer_lag":
            lag = self.lag_source() if self.lag_source is not None else None
            return [Sample({}, float(lag) if lag is not None else None, 0)]
        if metric == "events_silence":
            last = self.last_event_ts if self.last_event_ts is not None else self.started_at
            return [Sample({}, max(0.0, now - last), self.events)]
        if metric == "events_rejected":
            if window not in WINDOWS:
                raise ValueError(f"unknown window {window!r}")
            since = now - WINDOWS[window]
            count = sum(1 for t in self.rejections if t > since)
            return [Sample({}, float(count), count)]
        return self.status.query(metric, window, group_by, now)

    # -- dashboard --------------------------------------------------------------
    def snapshot(self, now: float | None = None, *, lag: int | None = None) -> dict[str, Any]:
        """Per-tenant figures for every window and an hour of per-minute history."""
        return dashboard.snapshot(self, self.clock() if now is None else now, lag=lag)

    def series(self, now: float | None = None, points: int = 60) -> dict[str, Any]:
        """Per-tenant per-minute history of the last ``points`` minutes (the 1 h tier)."""
        return dashboard.series(self, self.clock() if now is None else now, points)
