"""ragward.tracing: what spans record, how consumers link to producers, the service
name, and the trace ids on log lines (spans kept by the SDK's in-memory exporter)."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ragward import tracing
from ragward.settings import load_settings
from telemetry.events import trace_fields
from tests import otlp_receiver

spans = otlp_receiver.spans  # the in-memory spans fixture


class Event:
    def __init__(self, trace_id: str | None, span_id: str | None) -> None:
        self.trace_id, self.span_id = trace_id, span_id


def ids() -> tuple[str, str]:
    return uuid.uuid4().hex, uuid.uuid4().hex[:16]


def test_a_failure_is_recorded_by_type_never_by_message(spans: InMemorySpanExporter) -> None:
    """An exception leaving a span marks it failed with ``error.type`` only: its message
    (which can echo user input, here an e-mail address) is on no attribute, status or
    event."""
    with pytest.raises(ValueError), tracing.span("work"):
        raise ValueError("cannot parse jane.doe@example.com")
    [span] = spans.get_finished_spans()
    assert span.attributes == {"error.type": "ValueError"}
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"
    assert span.events == ()


def test_a_batch_from_one_trace_continues_it_and_links_every_producer(
    spans: InMemorySpanExporter,
) -> None:
    """A consumer batch whose events come from one request is that trace's child (of
    the first publishing span) and links each publishing span."""
    trace_id, first = ids()
    second = uuid.uuid4().hex[:16]
    with tracing.consumer_span("g", [Event(trace_id, first), Event(trace_id, second)], 2):
        pass
    [span] = spans.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER and span.name == "g process"
    assert span.parent is not None and span.parent.span_id == int(first, 16)
    assert span.context.trace_id == int(trace_id, 16)
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (int(trace_id, 16), int(first, 16)), (int(trace_id, 16), int(second, 16))]
    assert span.attributes is not None
    assert span.attributes["messaging.batch.message_count"] == 2


def test_a_batch_mixing_traces_starts_its_own_and_skips_malformed_ids(
    spans: InMemorySpanExporter,
) -> None:
    """Events of several traces: a new trace (not the child of whatever is current),
    linked to each well-formed producer; an event without ids, or with ids that are
    not hex of the right length, adds no link."""
    a, b = ids(), ids()
    events = [Event(*a), Event(*b), Event(None, None), Event("x" * 32, "y" * 16),
              Event(a[0].upper(), a[1])]
    with tracing.span("outer"), tracing.consumer_span("g", events, 5):
        pass
    consumer = next(s for s in spans.get_finished_spans() if s.name == "g process")
    assert consumer.parent is None
    assert consumer.context.trace_id not in (int(a[0], 16), int(b[0], 16))
    assert len(consumer.links) == 2


def test_trace_fields_reads_an_events_context_and_tolerates_garbage() -> None:
    """The audit consumer reads only the trace context from a raw record; a value that
    is not JSON gives None rather than failing the batch."""
    fields = trace_fields(b'{"type":"audit","trace_id":"ab","span_id":"cd","tenant":"t"}')
    assert fields is not None and (fields.trace_id, fields.span_id) == ("ab", "cd")
    assert trace_fields(b"\xff not json") is None


def test_otel_service_name_wins_over_the_commands_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OTEL_SERVICE_NAME (the standard variable) names the service; without it the
    command's own name is used."""
    for env, expected in (("payments-edge", "payments-edge"), (None, "ragward-gateway")):
        if env is None:
            monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        else:
            monkeypatch.setenv("OTEL_SERVICE_NAME", env)
        exporter = InMemorySpanExporter()
        stop = tracing.configure_tracing(load_settings(tracing=True), "ragward-gateway",
                                         exporter=exporter)
        try:
            with tracing.span("x"):
                pass
        finally:
            stop()
        [span] = exporter.get_finished_spans()
        assert span.resource.attributes["service.name"] == expected


def test_log_lines_inside_a_span_carry_its_ids_and_outside_none(
    spans: InMemorySpanExporter,
) -> None:
    """The structlog processor adds trace_id and span_id of the current sampled span,
    and nothing outside a span or while tracing is off."""
    assert tracing.add_trace_ids(None, "info", {"event": "e"}) == {"event": "e"}
    with tracing.span("x") as span:
        assert span is not None
        line = tracing.add_trace_ids(None, "info", {"event": "e"})
        context = span.get_span_context()
    assert line == {"event": "e", "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}"}


def test_nothing_is_built_while_tracing_is_off() -> None:
    """Off (the default): span() is the one shared no-op, no ids, no exemplar, and
    server_spans hands the app back unchanged."""
    assert not tracing.enabled()
    assert tracing.span("a") is tracing.span("b")
    with tracing.span("a") as span:
        assert span is None
    assert tracing.current_ids() is None and tracing.exemplar() is None

    async def app(scope: object, receive: object, send: object) -> None: ...

    assert tracing.server_spans(app, "gateway") is app
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


def test_inside_an_unsampled_trace_no_child_span_is_built(spans: InMemorySpanExporter) -> None:
    """Under a remote parent that is not sampled, span() and started() build nothing
    (None), yet the context still propagates unsampled to the next hop."""
    from opentelemetry import context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    trace_id, span_id = ids()
    parent = NonRecordingSpan(SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                          trace_flags=TraceFlags(TraceFlags.DEFAULT)))
    token = context.attach(set_span_in_context(parent))
    try:
        with tracing.span("child") as child:
            assert child is None
        assert tracing.started("stream") is None
        headers: dict[str, str] = {}
        tracing.inject(headers)
    finally:
        context.detach(token)
    assert headers["traceparent"] == f"00-{trace_id}-{span_id}-00"
    assert spans.get_finished_spans() == ()
