"""Rolling windows, error-rate rules, sketch accuracy and merging of RollingMetrics."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from telemetry.events import AuditEvent, StatusEvent, UsageEvent, new_event_id
from telemetry.rolling import RELATIVE_ACCURACY, RollingMetrics

T0 = 1_800_000_000.0  # a whole minute: 1800000000 % 60 == 0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def audit(ts: float, tenant: str = "acme", status: int = 200, latency_ms: float = 10.0,
          route: str = "/v1/query") -> AuditEvent:
    return AuditEvent(event_id=new_event_id(), request_id=new_event_id(), ts=iso(ts),
                      tenant=tenant, route=route, status=status, latency_ms=latency_ms)


def usage(ts: float, tenant: str = "acme", model: str = "m1", prompt: int = 10,
          completion: int = 5, embedding: int = 1, cost: float = 0.01,
          cached: bool = False) -> UsageEvent:
    return UsageEvent(event_id=new_event_id(), request_id=new_event_id(), ts=iso(ts),
                      tenant=tenant, route="/v1/query", model=model, prompt_tokens=prompt,
                      completion_tokens=completion, embedding_tokens=embedding, cost_usd=cost,
                      cached=cached)


def value(
    view: RollingMetrics, metric: str, window: str, now: float, **labels: str
) -> float | None:
    samples = view.query(metric, window, list(labels), now=now)
    for sample in samples:
        if sample.labels == labels:
            return sample.value
    raise AssertionError(f"no sample {labels} in {samples}")


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def test_windows_count_by_event_time_with_an_injected_clock() -> None:
    """Events land in windows by their own ts; 1m/5m/1h see only what is inside them."""
    view = RollingMetrics(clock=lambda: T0)
    view.ingest([audit(T0 - 30), audit(T0 - 30), audit(T0 - 200), audit(T0 - 1800),
                 audit(T0 - 7200)])
    now = T0
    assert view.query("request_rate", "1m", [], now=now)[0].requests == 2
    assert view.query("request_rate", "5m", [], now=now)[0].requests == 3
    assert view.query("request_rate", "1h", [], now=now)[0].requests == 4
    assert value(view, "request_rate", "1m", now) == pytest.approx(2 / 60)
    # a minute later the two recent events have left the 1m window
    assert view.query("request_rate", "1m", [], now=now + 61)[0].requests == 0


def test_error_rate_counts_5xx_only_not_4xx_or_429() -> None:
    """error_rate = 5xx / all requests; 400, 401, 429 are policy outcomes, not errors."""
    view = RollingMetrics(clock=lambda: T0)
    statuses = [200] * 6 + [400, 401, 429, 500, 502, 503, 504]
    view.ingest([audit(T0 - 5, status=s) for s in statuses])
    assert value(view, "error_rate", "1m", T0) == pytest.approx(4 / len(statuses))
    by_class = {s.labels["status_class"]: s.requests
                for s in view.query("request_rate", "1m", ["status_class"], now=T0)}
    assert by_class == {"2xx": 6, "4xx": 3, "5xx": 4}


def test_quantiles_lie_within_the_sketch_relative_error_of_exact_ones() -> None:
    """p50/p95/p99 from DDSketch are within 1 % of the exact quantiles of the same data."""
    rnd = random.Random(7)
    view = RollingMetrics(clock=lambda: T0)
    latencies = [rnd.lognormvariate(3, 1.2) for _ in range(20_000)]  # ms
    view.ingest([audit(T0 - rnd.uniform(0, 3500), latency_ms=ms) for ms in latencies])
    seconds = [ms / 1000 for ms in latencies]
    for metric, q in (("latency_p50", 0.5), ("latency_p95", 0.95), ("latency_p99", 0.99)):
        got = value(view, metric, "1h", T0)
        want = exact_quantile(seconds, q)
        assert got is not None
        assert abs(got - want) <= RELATIVE_ACCURACY * want + 1e-12, (metric, got, want)


def test_grouping_by_tenant_route_model_and_status_class() -> None:
    """group_by picks the label sets; [] gives one global sample even with no data."""
    view = RollingMetrics(clock=lambda: T0)
    view.ingest([audit(T0 - 1, tenant="a"), audit(T0 - 1, tenant="b", route="/v1/query/batch"),
                 usage(T0 - 1, tenant="a", model="m1"), usage(T0 - 1, tenant="a", model="m2")])
    tenants = {s.labels["tenant"]: s.requests for s in view.query("request_rate", "1m", ["tenant"],
                                                                     now=T0)}
    assert tenants == {"a": 1, "b": 1}
    routes = {s.labels["route"] for s in view.query("request_rate", "1m", ["route"], now=T0)}
    assert routes == {"/v1/query", "/v1/query/batch"}
    models = {s.labels["model"]: s.value for s in view.query("tokens_total", "1m", ["model"],
                                                              now=T0)}
    assert models == {"m1": 16.0, "m2": 16.0}
    empty = RollingMetrics(clock=lambda: T0)
    [sample] = empty.query("error_rate", "5m", [], now=T0)
    assert sample.requests == 0 and sample.value is None
    assert empty.query("error_rate", "5m", ["tenant"], now=T0) == []
    with pytest.raises(ValueError, match="group by"):
        view.query("request_rate", "1m", ["subject"], now=T0)
    with pytest.raises(ValueError, match="unknown metric"):
        view.query("p42", "1m", [], now=T0)


def test_usage_figures_tokens_cost_and_cache_hit_rate() -> None:
    """tokens_avg per answered request, tokens_total, cost_total and cache_hit_rate."""
    view = RollingMetrics(clock=lambda: T0)
    view.ingest([usage(T0 - 2, prompt=100, completion=20, embedding=4, cost=0.5, cached=True),
                 usage(T0 - 3, prompt=50, completion=10, embedding=2, cost=0.25)])
    assert value(view, "tokens_total", "1m", T0) == 186
    assert value(view, "tokens_avg", "1m", T0) == 93
    assert value(view, "cost_total", "1m", T0) == pytest.approx(0.75)
    assert value(view, "cache_hit_rate", "1m", T0) == 0.5
    assert view.totals.tokens[("acme", "m1", "prompt")] == 150
    assert view.totals.cache_hits == {"acme": 1} and view.totals.cache_lookups == {"acme": 2}


def test_merged_instances_equal_one_instance_that_saw_everything() -> None:
    """Two consumers' states merge exactly: counts equal, quantiles identical to one view."""
    rnd = random.Random(3)
    events = [audit(T0 - rnd.uniform(0, 50), tenant=rnd.choice("abc"),
                    status=rnd.choice([200, 200, 500]), latency_ms=rnd.expovariate(0.05))
              for _ in range(3000)]
    whole, left, right = (RollingMetrics(clock=lambda: T0) for _ in range(3))
    whole.ingest(events)
    left.ingest(events[:1234])
    right.ingest(events[1234:])
    merged = RollingMetrics.merged([left, right])
    for metric in ("request_rate", "error_rate", "latency_p50", "latency_p99"):
        for window in ("1m", "5m", "1h"):
            assert merged.query(metric, window, ["tenant"], now=T0) == \
                whole.query(metric, window, ["tenant"], now=T0), (metric, window)
    assert merged.totals.requests == whole.totals.requests


def test_status_metrics_from_status_events_and_silence() -> None:
    """quota_degraded, spool_fill_ratio from StatusEvent; events_silence from the last ts."""
    clock = [T0]
    view = RollingMetrics(clock=lambda: clock[0], lag_source=lambda: 42)
    assert view.query("events_silence", "1m", [], now=T0 + 10)[0].value == pytest.approx(10)
    view.ingest([
        StatusEvent(event_id=new_event_id(), ts=iso(T0 - 5), instance="gw-1",
                    quota_degraded={"rpm": True, "tokens": False}, spool_bytes=25,
                    spool_capacity_bytes=100),
        StatusEvent(event_id=new_event_id(), ts=iso(T0 - 4), instance="gw-2",
                    quota_degraded={"rpm": False}, spool_bytes=0, spool_capacity_bytes=100),
    ])
    assert view.query("quota_degraded", "1m", [], now=T0)[0].value == 1.0
    per = view.query("quota_degraded", "1m", ["instance", "control"], now=T0)
    assert {(s.labels["instance"], s.labels["control"]): s.value for s in per} == {
        ("gw-1", "rpm"): 1.0, ("gw-1", "tokens"): 0.0, ("gw-2", "rpm"): 0.0}
    assert view.query("spool_fill_ratio", "1m", [], now=T0)[0].value == 0.25
    assert view.query("consumer_lag", "1m", [], now=T0)[0].value == 42
    assert view.query("events_silence", "1m", [], now=T0 + 6)[0].value == pytest.approx(10)
    # a status older than the window no longer counts
    assert view.query("quota_degraded", "1m", [], now=T0 + 120)[0].value == 0.0


def test_series_has_an_hour_of_minutes_per_tenant_with_gaps_as_none() -> None:
    """The dashboard series: 60 one-minute points per tenant; no data = 0 rate, None latency."""
    view = RollingMetrics(clock=lambda: T0)
    view.ingest([audit(T0 - 600 + i, tenant="a") for i in range(30)])
    series = view.series(T0 + 30)
    assert len(series["t"]) == 60
    a = series["tenants"]["a"]
    assert sum(1 for v in a["latency_p99"] if v is not None) == 1
    assert sum(v * 60 for v in a["request_rate"] if v) == pytest.approx(30)


def test_old_and_future_events_are_bounded() -> None:
    """Events older than a tier keeps skip it (still counted in totals); future ts is clamped."""
    view = RollingMetrics(clock=lambda: T0)
    view.ingest([audit(T0 - 10_000), audit(T0 + 86_400)])
    assert sum(view.totals.requests.values()) == 2
    assert view.query("request_rate", "1h", [], now=T0 + 60)[0].requests == 1
    assert view.last_event_ts == pytest.approx(T0 + 60)


def test_label_sets_are_capped() -> None:
    """Beyond max_series label sets, events count under tenant __other__."""
    view = RollingMetrics(clock=lambda: T0, max_series=3)
    view.ingest([audit(T0 - 1, tenant=f"t{i}") for i in range(10)])
    tenants = {s.labels["tenant"]: s.requests
               for s in view.query("request_rate", "1m", ["tenant"], now=T0)}
    assert tenants == {"t0": 1, "t1": 1, "t2": 1, "__other__": 7}


def test_chat_streams_count_once_and_feed_the_ttft_quantiles() -> None:
    """A stream's opening audit event is not a request (its closing one is), the closing
    events' ``chat.ttft_ms`` make ttft_p50/p99 (none without chat traffic), and a stream's
    latency is its time to first token, so long answers do not page HighLatencyP99."""
    from telemetry.events import AuditEvent, ChatSummary
    from telemetry.rolling import RollingMetrics

    now = 1_700_000_000.0
    metrics = RollingMetrics(clock=lambda: now)
    ts = "2023-11-14T22:13:19.000000Z"
    plain = [AuditEvent(event_id=f"q{i}", request_id=f"q{i}", ts=ts, tenant="acme",
                        route="/v1/query", status=200, latency_ms=5.0) for i in range(5)]
    metrics.ingest(plain)
    assert metrics.query("ttft_p99", "1m", [])[0].value is None
    chats = []
    for i in range(100):
        for phase in ("start", "end"):
            chats.append(AuditEvent(
                event_id=f"c{i}{phase}", request_id=f"c{i}", ts=ts, tenant="acme",
                route="/v1/chat/completions", status=200, latency_ms=2000.0,
                chat=ChatSummary(streamed=True, phase=phase,  # type: ignore[arg-type]
                                 outcome="open" if phase == "start" else "completed",
                                 ttft_ms=None if phase == "start" else 10.0 * (i + 1))))
    metrics.ingest(chats)
    counted = {s.labels["route"]: s.requests for s in metrics.query("request_rate", "1m",
                                                                   ["route"])}
    assert counted == {"/v1/query": 5, "/v1/chat/completions": 100}
    p99 = metrics.query("ttft_p99", "1m", [])[0].value
    p50 = metrics.query("ttft_p50", "1m", [])[0].value
    assert p99 is not None and abs(p99 - 0.99) <= 0.02
    assert p50 is not None and abs(p50 - 0.50) <= 0.01
    # a stream's latency is its time to first token, not its 2 s length
    chat_latency = {s.labels["route"]: s.value for s in metrics.query("latency_p99", "1m",
                                                                      ["route"])}
    assert chat_latency["/v1/chat/completions"] is not None
    assert chat_latency["/v1/chat/completions"] < 1.1


def test_latency_histogram_buckets_are_inclusive_and_cumulative() -> None:
    """A latency on a bound counts in that bucket (Prometheus' ``le``), one past every
    bound only in ``+Inf``; buckets are cumulative, ``+Inf`` equals the count, and
    merging adds counts and sums."""
    from telemetry.rolling import LATENCY_BUCKETS, LatencyHistogram

    one = LatencyHistogram()
    for seconds in (0.005, 0.0051, 31.0):
        one.observe(seconds)
    cumulative = dict(one.cumulative())
    assert cumulative[0.005] == 1 and cumulative[0.01] == 2
    assert cumulative[LATENCY_BUCKETS[-1]] == 2 and cumulative[math.inf] == one.count == 3
    other = LatencyHistogram()
    other.observe(0.2)
    one.merge(other)
    assert one.count == 4 and one.sum == pytest.approx(31.2101)
    assert dict(one.cumulative())[0.25] == 3


def test_instances_heard_from_long_ago_are_forgotten() -> None:
    """The status map stays bounded as gateways come and go (each process, ``host:pid``,
    is an instance): after 1,000 instances reporting a minute apart, only those heard
    from within the longest window (1 h) are kept, and a fresh one still counts."""
    clock = [T0]
    view = RollingMetrics(clock=lambda: clock[0])
    for i in range(1000):
        clock[0] = T0 + 60 * i
        view.ingest([StatusEvent(event_id=new_event_id(), ts=iso(clock[0]),
                                 instance=f"gw:{i}", quota_degraded={"rpm": i == 999},
                                 spool_bytes=0, spool_capacity_bytes=100)])
    assert len(view.status) <= 61
    assert "gw:999" in view.status and "gw:0" not in view.status
    assert view.query("quota_degraded", "1m", [], now=clock[0])[0].value == 1.0
