"""Prometheus exposition of the rolling metrics (names fixed in the team notes).

The figures are read from :class:`~telemetry.rolling.RollingMetrics` at scrape
time by a custom collector, so the consumer's hot loop updates plain dicts
instead of prometheus-client objects. Labels are tenant, route template,
model, status class, window, quantile, instance, control — never raw paths or
user text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from telemetry.rolling import QUANTILES, WINDOWS, RollingMetrics

# What the text format has no escape for: C0 controls but LF (CR and NUL among them), DEL,
# C1, and the Unicode line and paragraph separators (str.splitlines and some parsers break
# lines there). The format itself escapes only backslash, double quote and LF.
_UNSPEAKABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def safe_label_value(value: str) -> str:
    """``value`` with every character the text format cannot carry written as ``\\xHH``
    (``\\uHHHH``) text; the library then escapes backslash, quote and LF per the format,
    so a label value is always one quoted string on one line."""
    return _UNSPEAKABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100
                            else f"\\u{ord(m[0]):04x}", value)


class _SafeLabels(Collector):
    def __init__(self, registry: Collector) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if not any(_UNSPEAKABLE.search(v) for s in metric.samples for v in s.labels.values()):
                yield metric
                continue
            safe = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            safe.samples = [
                s._replace(labels={k: safe_label_value(v) for k, v in s.labels.items()})
                for s in metric.samples
            ]
            yield safe


def render(registry: Collector) -> bytes:
    """The Prometheus text exposition of ``registry``, label values made safe
    (:func:`safe_label_value`). Every ``/metrics`` of ragward answers through this."""
    return generate_latest(_SafeLabels(registry))


def render_negotiated(registry: Collector, accept: str | None) -> tuple[bytes, str] | None:
    """OpenMetrics (which carries exemplars: the trace of a latency bucket) when the
    scraper's ``Accept`` asks for it, as (body, content type); None means the classic
    text format (:func:`render`)."""
    encoder, content_type = choose_encoder(accept or "")
    if not content_type.startswith("application/openmetrics-text"):
        return None
    return encoder(_SafeLabels(registry)), content_type


def _le(bound: float) -> str:
    if math.isinf(bound):
        return "+Inf"
    return repr(bound) if bound != int(bound) else f"{bound:.1f}"


class RollingCollector(Collector):
    def __init__(self, view: RollingMetrics) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view, totals = self.view, self.view.totals

        requests = CounterMetricFamily("ragward_requests", "Requests seen in audit events.",
                                       labels=["tenant", "route", "status_class"])
        for key, count in sorted(totals.requests.items()):
            requests.add_metric(list(key), count)
        yield requests

        latency = HistogramMetricFamily("ragward_request_latency_seconds",
                                        "Request latency from audit events.",
                                        labels=["tenant", "route"])
        for route_key, histogram in sorted(totals.latency.items()):
            buckets = [(_le(bound), float(count)) for bound, count in histogram.cumulative()]
            latency.add_metric(list(route_key), buckets, sum_value=histogram.sum)
        yield latency

        tokens = CounterMetricFamily("ragward_tokens", "Tokens used, from usage events.",
                                     labels=["tenant", "model", "kind"])
        for key, count in sorted(totals.tokens.items()):
            tokens.add_metric(list(key), count)
        yield tokens

        cost = CounterMetricFamily("ragward_cost_usd", "Cost in US dollars, from usage events.",
                                   labels=["tenant", "model"])
        for model_key, usd in sorted(totals.cost.items()):
            cost.add_metric(list(model_key), usd)
        yield cost

        hits = CounterMetricFamily("ragward_cache_hits", "Answers served from the cache.",
                                   labels=["tenant"])
        lookups = CounterMetricFamily("ragward_cache_lookups", "Answers looked up in the cache.",
                                      labels=["tenant"])
        for tenant, count in sorted(totals.cache_lookups.items()):
            lookups.add_metric([tenant], count)
            hits.add_metric([tenant], totals.cache_hits.get(tenant, 0))
        yield hits
        yield lookups

        error_rate = GaugeMetricFamily("ragward_rolling_error_rate",
                                       "5xx answers over all answers in the window.",
                                       labels=["tenant", "window"])
        request_rate = GaugeMetricFamily("ragward_rolling_request_rate",
                                         "Requests per second over the window.",
                                         labels=["tenant", "window"])
        # A summary, so the quantile label is legal (promtool): quantiles, _sum and _count over
        # the window — a rolling figure, not a counter: read it, do not rate() it.
        quantiles = Metric("ragward_rolling_latency_seconds",
                           "Latency quantiles over the window (DDSketch, 1% accuracy).", "summary")
        tokens_avg = GaugeMetricFamily("ragward_rolling_tokens_avg",
                                       "Tokens per answered request over the window.",
                                       labels=["tenant", "window"])
        now = view.clock()
        for window in WINDOWS:
            for (tenant,), agg in sorted(view.aggregate(window, ["tenant"], now).items()):
                if agg.cells.requests:
                    request_rate.add_metric([tenant, window], agg.value("request_rate") or 0.0)
                    error_rate.add_metric([tenant, window], agg.value("error_rate") or 0.0)
                    labels = {"tenant": tenant, "window": window}
                    for name, q in QUANTILES.items():
                        value = agg.value(name)
                        if value is not None:
                            quantiles.add_sample("ragward_rolling_latency_seconds",
                                                 {**labels, "quantile": str(q)}, value)
                    quantiles.add_sample("ragward_rolling_latency_seconds_sum", labels,
                                         agg.cells.latency_sum)
                    quantiles.add_sample("ragward_rolling_latency_seconds_count", labels,
                                         float(agg.cells.requests))
                avg = agg.value("tokens_avg")
                if avg is not None:
                    tokens_avg.add_metric([tenant, window], avg)
        yield error_rate
        yield request_rate
        yield quantiles
        yield tokens_avg

        yield GaugeMetricFamily("ragward_last_event_timestamp_seconds",
                                "Timestamp (ts) of the newest event consumed.",
                                value=view.last_event_ts or 0.0)

        degraded = GaugeMetricFamily("ragward_quota_degraded",
                                     "1 when a gateway instance reports a degraded quota control.",
                                     labels=["control", "instance"])
        fill = GaugeMetricFamily("ragward_audit_spool_fill_ratio",
                                 "Event spool bytes over capacity, per gateway instance.",
                                 labels=["instance"])
        for instance, status in sorted(view.status.items()):
            for control, bad in sorted(status.quota_degraded.items()):
                degraded.add_metric([control, instance], 1.0 if bad else 0.0)
            fill.add_metric([instance], status.spool_fill())
        yield degraded
        yield fill
