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

One job per module: :mod:`~telemetry.rolling.decode` (the lean event types the
consumer decodes), :mod:`~telemetry.rolling.figures` (cells, aggregates, metric
names), :mod:`~telemetry.rolling.tiers` (the time buckets),
:mod:`~telemetry.rolling.totals` (cumulative Prometheus counters and the latency
histogram), :mod:`~telemetry.rolling.instances` (gateway instances' status),
:mod:`~telemetry.rolling.dashboard` (the dashboard's view) and
:mod:`~telemetry.rolling.view` (:class:`RollingMetrics`, which ingests, merges and
answers queries).
"""

from telemetry.rolling.decode import MetricsEvent, metrics_decoder
from telemetry.rolling.figures import (
    DIMENSIONS,
    METRICS,
    QUANTILES,
    RELATIVE_ACCURACY,
    REQUEST_METRICS,
    STATUS_METRICS,
    TTFT_QUANTILES,
    USAGE_METRICS,
    WINDOWS,
    Aggregate,
    MetricsView,
    Sample,
)
from telemetry.rolling.totals import LATENCY_BUCKETS, LatencyHistogram, Totals
from telemetry.rolling.view import RollingMetrics, status_class

__all__ = ["DIMENSIONS", "LATENCY_BUCKETS", "METRICS", "QUANTILES", "RELATIVE_ACCURACY",
           "REQUEST_METRICS", "STATUS_METRICS", "TTFT_QUANTILES", "USAGE_METRICS", "WINDOWS",
           "Aggregate", "LatencyHistogram", "MetricsEvent", "MetricsView", "RollingMetrics",
           "Sample", "Totals", "metrics_decoder", "status_class"]
