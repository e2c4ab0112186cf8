"""Tracing in the gateway, in process (spans kept by the SDK's in-memory exporter) in
front of a real rag_core-shaped HTTP server: what is propagated, what the events carry,
the exemplars of /metrics, and that nothing of it exists while tracing is off."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Tracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ragward import tracing
from tests import otlp_receiver
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.upstream_server import UpstreamServer

spans = otlp_receiver.spans  # the in-memory spans fixture


def client_traceparent() -> tuple[str, str]:
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


def sent_traceparent(upstream: UpstreamServer) -> str | None:
    """The traceparent header of the last request rag_core received."""
    return {k.lower(): v for k, v in upstream.headers[-1].items()}.get("traceparent")


async def test_traced_request_propagates_to_rag_core_and_into_both_events(
    tmp_path: Path, upstream: UpstreamServer, spans: InMemorySpanExporter
) -> None:
    """rag_core receives a traceparent in the client's trace whose parent is the gateway's
    forwarding span; the audit and usage events carry the trace id and the id of the
    audit publish span (their producer), which is the server span's child."""
    trace_id, header = client_traceparent()
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        response = await gw.client.post("/v1/query", json={"question": "leave days?"},
                                        headers={**bearer(), "traceparent": header})
        assert response.status_code == 200
        [audit], [usage] = gw.audit_events(), gw.usage_events()
    finished = spans.get_finished_spans()
    [publish] = [s for s in finished if s.name == "audit publish"]
    [forward] = [s for s in finished if s.name == "POST /v1/query" and s.kind.name == "CLIENT"]
    sent = sent_traceparent(upstream)
    assert sent is not None
    assert sent.startswith(f"00-{trace_id}-{forward.context.span_id:016x}-")
    assert audit.trace_id == usage.trace_id == trace_id
    assert audit.span_id == usage.span_id == f"{publish.context.span_id:016x}"
    server = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    assert len(server) == 1 and publish.parent is not None
    assert publish.parent.span_id == server[0].context.span_id


async def test_openmetrics_scrape_carries_trace_exemplars_classic_does_not(
    tmp_path: Path, upstream: UpstreamServer, spans: InMemorySpanExporter
) -> None:
    """The latency histogram's bucket for a traced request has an exemplar naming its
    trace when the scraper asks for OpenMetrics; the classic text format is unchanged."""
    trace_id, header = client_traceparent()
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        await gw.client.post("/v1/query", json={"question": "leave days?"},
                             headers={**bearer(), "traceparent": header})
        open_metrics = await gw.client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        classic = await gw.client.get("/metrics")
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    exemplars = [line for line in open_metrics.text.splitlines()
                 if line.startswith("ragward_gateway_request_duration_seconds_bucket")
                 and "# {" in line]
    assert len(exemplars) == 1 and f'trace_id="{trace_id}"' in exemplars[0]
    assert open_metrics.text.rstrip().endswith("# EOF")
    assert classic.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in classic.text


async def test_unsampled_request_leaves_no_ids_in_events(
    tmp_path: Path, upstream: UpstreamServer, spans: InMemorySpanExporter
) -> None:
    """A client that says 'not sampled' (flags 00) is honoured (parent-based sampler): no
    span is exported and the events carry no trace ids that would lead nowhere; the
    context still reaches rag_core, unsampled."""
    trace_id = uuid.uuid4().hex
    header = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-00"
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        await gw.client.post("/v1/query", json={"question": "leave days?"},
                             headers={**bearer(), "traceparent": header})
        [audit] = gw.audit_events()
    assert spans.get_finished_spans() == ()
    assert audit.trace_id is None and audit.span_id is None
    sent = sent_traceparent(upstream)
    assert sent is not None and sent.startswith(f"00-{trace_id}-") and sent.endswith("-00")


async def test_tracing_off_builds_nothing_on_the_request_path(
    tmp_path: Path, upstream: UpstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tracing off (the default) a request with a client traceparent is served
    without a single span, context or propagator call (each would raise here), sends no
    traceparent to rag_core and writes no trace ids into the events."""

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("OpenTelemetry used while tracing is off")

    for owner, name in ((Tracer, "start_span"), (NonRecordingSpan, "__init__"),
                        (TraceContextTextMapPropagator, "extract"),
                        (TraceContextTextMapPropagator, "inject"),
                        (trace_api, "get_current_span")):
        monkeypatch.setattr(owner, name, forbidden)
    assert not tracing.enabled()
    _, header = client_traceparent()
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        response = await gw.client.post("/v1/query", json={"question": "leave days?"},
                                        headers={**bearer(), "traceparent": header})
        assert response.status_code == 200, response.text
        [audit], [usage] = gw.audit_events(), gw.usage_events()
    assert (audit.trace_id, audit.span_id, usage.trace_id) == (None, None, None)
    assert sent_traceparent(upstream) is None
