"""Rolling 1 m / 5 m / 1 h metrics from audit, usage and status events.

Every event lands in time buckets by its own ``ts`` (not by when it was
consumed), in three tiers: 1-second buckets kept for the 1 m window, 10-second
buckets for 5 m, 1-minute buckets for 1 h (and for the dashboard's hour of
history). A bucket holds one :class:`Cell` per label set
``(tenant, route, model, status_class)``; a window query adds up the cells of
the buckets inside ``(now - window, now]``, the current partial bucket included
and the partial bucket at the old edge left out — so 1 m means 59-60 s, 5 m
290-300 s, 1 h 59-60 min; rates divide by the span actually covered.

What comes from where:

* **audit events** — one per request: request count, status class, latency
  (``latency_ms``, stored in seconds); for chat completions the time to first
  token (``chat.ttft_ms``) too. A streamed answer's *opening* audit event
  (``chat.phase="start"``) is skipped: the request counts once, at its end,
  and its latency is its time to first token (a long answer is not a slow one).
  ``model`` is ``"-"`` for them (the gateway does not know the model when it
  audits), so request metrics grouped by model show one ``model="-"`` group.
* **usage events** — one per answered request: prompt / completion /
  embedding tokens, cost, cache hit (``cached``) — every usage event is one
  cache lookup.
* **status events** — per gateway instance: degraded quota controls, spool fill.

**Errors** are 5xx answers over all answers. 4xx are not errors: they are the
gateway doing its job on bad, unauthorised or over-quota requests, 429
included (a tenant hitting its quota is policy, not failure; it shows in
``ragward_requests_total{status_class="4xx"}`` and the request rate by
``status_class``). Status 0 (no answer recorded) has class ``"other"``.

**Latency quantiles** come from DDSketch with 1 % relative accuracy: a
reported pXX is within 1 % of the exact value of the same rank. Sketches
merge exactly, so windows, label groups and consumer instances
(:meth:`RollingMetrics.merge`) combine without losing that guarantee.

Cardinality is bounded: at most ``max_series`` label sets; events beyond that
are counted under ``tenant="__other__"`` with a warning.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec
import structlog
from ddsketch import DDSketch

from telemetry.events import AuditEvent, Event, StatusEvent, UsageEvent

log = structlog.get_logger(__name__)

RELATIVE_ACCURACY = 0.01
WINDOWS: dict[str, float] = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}
DIMENSIONS = ("tenant", "route", "model", "status_class")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
TTFT_QUANTILES = {"ttft_p50": 0.5, "ttft_p95": 0.95, "ttft_p99": 0.99}
REQUEST_METRICS = {"request_rate", "error_rate", *QUANTILES, *TTFT_QUANTILES}
USAGE_METRICS = {"tokens_avg", "tokens_total", "cost_total", "cache_hit_rate"}
STATUS_METRICS = {"consumer_lag", "events_silence", "quota_degraded", "spool_fill_ratio",
                  "events_rejected"}
MAX_REJECTIONS = 100_000  # times remembered for events_rejected (a flood must stay bounded)
METRICS = REQUEST_METRICS | USAGE_METRICS | STATUS_METRICS
MAX_FUTURE_SKEW_S = 60.0

Key = tuple[str, str, str, str]  # tenant, route, model, status_class


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float | None
    requests: int


class MetricsView(Protocol):
    def query(
        self, metric: str, window: str, group_by: Sequence[str], now: float | None = None
    ) -> list[Sample]: ...


# -- what the metrics consumer decodes ------------------------------------------
# Only the fields the metrics use, and not tracked by the garbage collector: decoding
# these is about three times faster than the full event types (which RollingMetrics also
# accepts). Unknown fields are skipped; the same ``type`` tags as telemetry.events.


class MetricsChat(msgspec.Struct, gc=False):
    streamed: bool = False
    phase: str = "end"
    ttft_ms: float | None = None


class MetricsAudit(msgspec.Struct, tag_field="type", tag="audit", gc=False):
    event_id: str
    ts: str
    tenant: str = "-"
    route: str = ""
    status: int = 0
    latency_ms: float = 0.0
    chat: MetricsChat | None = None


class MetricsUsage(msgspec.Struct, tag_field="type", tag="usage", gc=False):
    event_id: str
    ts: str
    tenant: str = "-"
    route: str = ""
    model: str = ""
    status: int = 200
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    cost_usd: float = 0.0


class MetricsStatus(msgspec.Struct, tag_field="type", tag="status"):
    event_id: str
    ts: str
    instance: str = ""
    quota_degraded: dict[str, bool] = msgspec.field(default_factory=dict)
    spool_bytes: int = 0
    spool_capacity_bytes: int = 0


class MetricsIgnored(msgspec.Struct, tag_field="type", tag="alert", gc=False):
    event_id: str
    ts: str


MetricsEvent = MetricsAudit | MetricsUsage | MetricsStatus | MetricsIgnored
metrics_decoder = msgspec.json.Decoder(MetricsEvent)


def new_sketch() -> DDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def _merged(sketches: list[DDSketch]) -> DDSketch:
    """One sketch holding all of ``sketches`` (merging is exact for DDSketch)."""
    merged = new_sketch()
    for sketch in sketches:
        merged.merge(sketch)
    return merged


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


class Cell:
    """Figures of one label set in one time bucket."""

    __slots__ = ("completion", "cost", "embedding", "errors", "hits", "latency", "latency_sum",
                 "prompt", "requests", "ttft", "usage")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency: DDSketch | None = None
        self.ttft: DDSketch | None = None  # chat completions' time to first token
        self.latency_sum = 0.0
        self.usage = 0
        self.prompt = 0
        self.completion = 0
        self.embedding = 0
        self.cost = 0.0
        self.hits = 0

    def add_counts(self, other: Cell) -> None:
        """Add ``other``'s counters and sums (not its latency sketch)."""
        self.requests += other.requests
        self.errors += other.errors
        self.latency_sum += other.latency_sum
        self.usage += other.usage
        self.prompt += other.prompt
        self.completion += other.completion
        self.embedding += other.embedding
        self.cost += other.cost
        self.hits += other.hits

    def merge(self, other: Cell) -> None:
        self.add_counts(other)
        if other.latency is not None:
            if self.latency is None:
                self.latency = new_sketch()
            self.latency.merge(other.latency)
        if other.ttft is not None:
            if self.ttft is None:
                self.ttft = new_sketch()
            self.ttft.merge(other.ttft)


class Aggregate:
    """Cells added up for one group of one window; figures computed on demand
    (sketches are merged only when a quantile is asked for)."""

    __slots__ = ("_sketches", "_ttft_sketches", "cells", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        self.cells = Cell()
        self._sketches: list[DDSketch] = []
        self._ttft_sketches: list[DDSketch] = []

    def add(self, cell: Cell) -> None:
        self.cells.add_counts(cell)
        if cell.latency is not None:
            self._sketches.append(cell.latency)
        if cell.ttft is not None:
            self._ttft_sketches.append(cell.ttft)

    def ttft_sketch(self) -> DDSketch | None:
        if self._ttft_sketches:
            self.cells.ttft, self._ttft_sketches = _merged(self._ttft_sketches), []
        return self.cells.ttft

    def sketch(self) -> DDSketch | None:
        if self._sketches:
            self.cells.latency, self._sketches = _merged(self._sketches), []
        return self.cells.latency

    def value(self, metric: str) -> float | None:
        c = self.cells
        if metric == "request_rate":
            return c.requests / self.span if self.span > 0 else 0.0
        if metric == "error_rate":
            return c.errors / c.requests if c.requests else None
        if metric in QUANTILES:
            sketch = self.sketch()
            if sketch is None or sketch.count == 0:
                return None
            quantile = sketch.get_quantile_value(QUANTILES[metric])
            return None if quantile is None else float(quantile)
        if metric in TTFT_QUANTILES:
            sketch = self.ttft_sketch()
            if sketch is None or sketch.count == 0:
                return None
            quantile = sketch.get_quantile_value(TTFT_QUANTILES[metric])
            return None if quantile is None else float(quantile)
        if metric == "tokens_total":
            return float(c.prompt + c.completion + c.embedding)
        if metric == "tokens_avg":
            return (c.prompt + c.completion + c.embedding) / c.usage if c.usage else None
        if metric == "cost_total":
            return c.cost
        if metric == "cache_hit_rate":
            return c.hits / c.usage if c.usage else None
        raise ValueError(f"unknown metric {metric!r}")

    def figures(self) -> dict[str, float | int | None]:
        c = self.cells
        out: dict[str, float | int | None] = {"requests": c.requests, "answered": c.usage}
        for metric in ("request_rate", "error_rate", *QUANTILES, "tokens_total", "tokens_avg",
                       "cost_total", "cache_hit_rate"):
            out[metric] = self.value(metric)
        out["prompt_tokens"], out["completion_tokens"] = c.prompt, c.completion
        out["embedding_tokens"] = c.embedding
        return out


@dataclass
class Tier:
    resolution: float
    span: float
    buckets: dict[int, dict[Key, Cell]] = field(default_factory=dict)
    newest: int = -1
    keep: int = 0

    def __post_init__(self) -> None:
        self.keep = math.ceil(self.span / self.resolution) + 1

    def cell(self, ts: float, key: Key) -> Cell | None:
        index = int(ts // self.resolution)
        bucket = self.buckets.get(index)
        if bucket is None:
            if index <= self.newest - self.keep:
                return None  # older than this tier keeps
            bucket = self.buckets[index] = {}
            if index > self.newest:
                self.newest = index
                floor = index - self.keep
                for old in [i for i in self.buckets if i <= floor]:
                    del self.buckets[old]
        cell = bucket.get(key)
        if cell is None:
            cell = bucket[key] = Cell()
        return cell

    def window(self, now: float, seconds: float) -> tuple[range, float]:
        """Bucket indexes overlapping (now - seconds, now] and the span they cover."""
        last = int(now // self.resolution)
        first = int((now - seconds) // self.resolution) + 1
        if (now - seconds) % self.resolution == 0:
            first -= 1
        first = max(first, last - self.keep + 1)
        span = min(seconds, now - first * self.resolution)
        return range(first, last + 1), max(span, 1e-9)


@dataclass
class InstanceStatus:
    ts: float
    quota_degraded: dict[str, bool]
    spool_bytes: int
    spool_capacity_bytes: int


def _add(mine: dict[Any, Any], theirs: dict[Any, Any]) -> None:
    for key, value in theirs.items():
        mine[key] = mine.get(key, 0) + value


@dataclass
class Totals:
    """Cumulative counters since start, for Prometheus."""

    requests: dict[tuple[str, str, str], int] = field(default_factory=dict)
    latency: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    tokens: dict[tuple[str, str, str], int] = field(default_factory=dict)
    cost: dict[tuple[str, str], float] = field(default_factory=dict)
    cache_hits: dict[str, int] = field(default_factory=dict)
    cache_lookups: dict[str, int] = field(default_factory=dict)

    def merge(self, other: Totals) -> None:
        _add(self.requests, other.requests)
        _add(self.tokens, other.tokens)
        _add(self.cost, other.cost)
        _add(self.cache_hits, other.cache_hits)
        _add(self.cache_lookups, other.cache_lookups)
        for k, hist in other.latency.items():
            own = self.latency.setdefault(k, [0.0] * (len(LATENCY_BUCKETS) + 3))
            for i, v in enumerate(hist):
                own[i] += v


_KINDS: dict[type, int] = {AuditEvent: 1, MetricsAudit: 1, UsageEvent: 2, MetricsUsage: 2,
                           StatusEvent: 3, MetricsStatus: 3}


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
        self.tiers = {"1m": Tier(1.0, 60.0), "5m": Tier(10.0, 300.0), "1h": Tier(60.0, 3600.0)}
        self._tiers = tuple(self.tiers.values())
        self.totals = Totals()
        self.status: dict[str, InstanceStatus] = {}
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
        """Add events (full types from telemetry.events or the lean Metrics* ones)."""
        limit = self.clock() + MAX_FUTURE_SKEW_S
        kinds = _KINDS
        for event in events:
            kind = kinds.get(type(event))
            if kind is None:
                continue
            try:
                ts = parse_ts(event.ts)
            except ValueError:
                ts = limit - MAX_FUTURE_SKEW_S
            if ts > limit:
                ts = limit
            if kind == 1:
                self._audit(event, ts)  # type: ignore[arg-type]
            elif kind == 2:
                self._usage(event, ts)  # type: ignore[arg-type]
            else:
                status: StatusEvent | MetricsStatus = event  # type: ignore[assignment]
                self.status[status.instance] = InstanceStatus(
                    ts, dict(status.quota_degraded), status.spool_bytes,
                    status.spool_capacity_bytes,
                )
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
        t = self.totals
        rk = (key[0], key[1], klass)
        t.requests[rk] = t.requests.get(rk, 0) + 1
        hist = t.latency.get(rk[:2])
        if hist is None:
            # per bucket counts, then sum and count
            hist = t.latency[rk[:2]] = [0.0] * (len(LATENCY_BUCKETS) + 3)
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                hist[i] += 1
                break
        else:
            hist[len(LATENCY_BUCKETS)] += 1  # +Inf
        hist[-2] += seconds
        hist[-1] += 1

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
        t = self.totals
        tenant, model = key[0], key[2]
        for kind, count in (("prompt", e.prompt_tokens), ("completion", e.completion_tokens),
                            ("embedding", e.embedding_tokens)):
            if count:
                tk = (tenant, model, kind)
                t.tokens[tk] = t.tokens.get(tk, 0) + count
        ck = (tenant, model)
        t.cost[ck] = t.cost.get(ck, 0.0) + e.cost_usd
        t.cache_lookups[tenant] = t.cache_lookups.get(tenant, 0) + 1
        if hit:
            t.cache_hits[tenant] = t.cache_hits.get(tenant, 0) + 1

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
        for instance, status in other.status.items():
            if instance not in self.status or self.status[instance].ts < status.ts:
                self.status[instance] = status
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
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}")
        if metric == "events_rejected":
            since = now - WINDOWS[window]
            count = sum(1 for t in self.rejections if t > since)
            return [Sample({}, float(count), count)]
        fresh = {i: s for i, s in self.status.items() if s.ts > now - WINDOWS[window]}
        if metric == "spool_fill_ratio":
            ratios = {i: (s.spool_bytes / s.spool_capacity_bytes if s.spool_capacity_bytes else 0.0)
                      for i, s in fresh.items()}
            if "instance" in group_by:
                return [Sample({"instance": i}, r, 1) for i, r in sorted(ratios.items())]
            return [Sample({}, max(ratios.values()) if ratios else None, len(ratios))]
        # quota_degraded
        flags = {(i, c): 1.0 if bad else 0.0 for i, s in fresh.items()
                 for c, bad in s.quota_degraded.items()}
        keep = [d for d in ("instance", "control") if d in group_by]
        if keep:
            grouped: dict[tuple[str, ...], float] = {}
            for (instance, control), flag in flags.items():
                labels = {"instance": instance, "control": control}
                g = tuple(labels[d] for d in keep)
                grouped[g] = max(grouped.get(g, 0.0), flag)
            return [Sample(dict(zip(keep, g, strict=True)), v, 1)
                    for g, v in sorted(grouped.items())]
        return [Sample({}, max(flags.values()) if flags else 0.0, len(flags))]

    # -- dashboard --------------------------------------------------------------
    def snapshot(self, now: float | None = None, *, lag: int | None = None) -> dict[str, Any]:
        """Per-tenant figures for every window and an hour of per-minute history."""
        now = self.clock() if now is None else now
        windows: dict[str, dict[str, Any]] = {}
        overall: dict[str, Any] = {}
        for window in WINDOWS:
            per_tenant = self.aggregate(window, ["tenant"], now)
            windows[window] = {g[0]: a.figures() for g, a in sorted(per_tenant.items())}
            total = self.aggregate(window, [], now).get(())
            overall[window] = (total or Aggregate(1.0)).figures()
        return {
            "now": now,
            "windows": windows,
            "overall": overall,
            "series": self.series(now),
            "status": {
                i: {"ts": s.ts, "quota_degraded": s.quota_degraded, "spool_bytes": s.spool_bytes,
                    "spool_capacity_bytes": s.spool_capacity_bytes}
                for i, s in sorted(self.status.items())
            },
            "consumer": {
                "events": self.events,
                "lag": lag if lag is not None else (self.lag_source() if self.lag_source else None),
                "last_event_ts": self.last_event_ts,
                "silence_s": now - (self.last_event_ts or self.started_at),
            },
        }

    def series(self, now: float | None = None, points: int = 60) -> dict[str, Any]:
        """Per-tenant per-minute history of the last ``points`` minutes (the 1 h tier)."""
        now = self.clock() if now is None else now
        tier = self.tiers["1h"]
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
