"""Where tests find the spans ragward made.

* A real OTLP/HTTP trace receiver: :class:`tests.receivers.HttpReceiver` answering
  ``POST /v1/traces``, the bodies decoded as ``opentelemetry-proto``
  ``ExportTraceServiceRequest`` messages (what an OpenTelemetry Collector, Jaeger or
  Tempo accepts from the SDK's OTLP/HTTP exporter), for processes.
* The fixture ``spans``: tracing turned on in this process for one test, the spans kept
  by the SDK's in-memory exporter (``from tests.otlp_receiver import spans  # noqa: F401``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragward import tracing
from ragward.settings import load_settings
from tests.receivers import HttpReceiver

TRACES = "/v1/traces"
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
         5: "consumer"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process for the test; its finished spans, in memory."""
    exporter = InMemorySpanExporter()
    stop = tracing.configure_tracing(load_settings(tracing=True), "ragward-test",
                                     exporter=exporter)
    try:
        yield exporter
    finally:
        stop()


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]]  # (trace id, span id)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(ReceivedSpan(
                    service=str(resource.get("service.name")), name=s.name,
                    kind=KINDS[s.kind], trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(),
                    attributes={a.key: _value(a.value) for a in s.attributes},
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                ))
    return spans


def received(receiver: HttpReceiver) -> list[ReceivedSpan]:
    return [span for request in receiver.at(TRACES) for span in decode(request.body)]


async def wait_for_spans(
    receiver: HttpReceiver, done: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 20
) -> list[ReceivedSpan]:
    """Every span received so far, once ``done`` says they are enough (or fail, naming
    what did arrive)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done(spans := received(receiver)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"spans so far: {[(s.service, s.name) for s in spans]}")
        await asyncio.sleep(0.05)
    return spans
