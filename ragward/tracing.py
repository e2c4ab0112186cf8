"""OpenTelemetry tracing: off by default, and then nothing is built per request.

``RAGWARD_TRACING=true`` turns it on for a serving command (:func:`configure_tracing`,
called once by :mod:`ragward.cli`): the OpenTelemetry SDK with the OTLP/HTTP exporter
and a batch processor. The SDK itself reads the standard variables —
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
(default ``parentbased_always_on``), ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SDK_DISABLED``. Context travels as W3C
``traceparent`` / ``tracestate``: from the client into the gateway, from the gateway to
rag_core over HTTP, and inside the audit and usage events (``trace_id`` and ``span_id``
of the publishing span) to the consumers, which link their spans to it.

While tracing is off the module holds ``None`` and every helper returns at once:
:func:`span` a shared no-op context manager, :func:`server_spans` the app unchanged,
:func:`inject` nothing. OpenTelemetry is imported only when tracing is turned on.

Attributes never carry a question, an answer or anything else a user wrote: names,
counts, route templates, models, token figures, ids. Failures are recorded by
exception *type* (``error.type``), never by message (a message can echo input).
The redacted question (placeholders, never raw PII) goes on the gateway's
``redact`` span only with ``RAGWARD_TRACING_REDACTED_TEXT=true``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer
    from structlog.types import EventDict

    from ragward.settings import Settings

Kind = Literal["internal", "server", "client", "producer", "consumer"]
Attributes = dict[str, str | int | float | bool | list[str]]

_HEX_TRACE = re.compile(r"[0-9a-f]{32}")
_HEX_SPAN = re.compile(r"[0-9a-f]{16}")
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext(None)
_UNTRACED_PATHS = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes

_tracer: Tracer | None = None
_redacted_text = False


def enabled() -> bool:
    return _tracer is not None


def redacted_text_allowed() -> bool:
    """Whether redacted text (placeholders only) may go on a span."""
    return _tracer is not None and _redacted_text


def configure_tracing(
    settings: Settings, service: str, *, exporter: SpanExporter | None = None
) -> Callable[[], None]:
    """Turn tracing on for this process when ``settings.tracing``; returns the shutdown
    (flushes the spans still queued). ``service`` is the ``service.name`` unless
    ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name one. Tests pass an
    ``exporter`` (spans are then exported synchronously, one by one)."""
    global _tracer, _redacted_text
    if not settings.tracing:
        return lambda: None
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    named = OTELResourceDetector().detect().attributes.get(SERVICE_NAME)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: named or service}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("ragward")
    _redacted_text = settings.tracing_redacted_text

    def shutdown() -> None:
        global _tracer
        _tracer = None
        provider.shutdown()

    return shutdown


def _kind(kind: Kind) -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind[kind.upper()]


class _Traced:
    """One span made current for the block; a failure is recorded by its type only."""

    __slots__ = ("_span", "_use")

    def __init__(self, span: Span) -> None:
        from opentelemetry.trace import use_span

        self._span = span
        self._use = use_span(span, end_on_exit=True, record_exception=False,
                             set_status_on_exception=False)

    def __enter__(self) -> Span:
        return self._use.__enter__()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        if kind is not None and not issubclass(kind, GeneratorExit):
            mark_failed(self._span, kind)
        self._use.__exit__(kind, exc, tb)


def mark_failed(span: Span, kind: type[BaseException]) -> None:
    from opentelemetry.trace import StatusCode

    span.set_attribute("error.type", kind.__name__)
    span.set_status(StatusCode.ERROR, kind.__name__)


def span(
    name: str, kind: Kind = "internal", attributes: Attributes | None = None,
    *, parent: Any = None, links: Iterable[Any] = (),
) -> contextlib.AbstractContextManager[Span | None]:
    """A child of the current span for the ``with`` block; None while tracing is off, and
    inside a trace that is not sampled (its children would be dropped anyway: building
    them is most of what an unsampled request would cost)."""
    tracer = _tracer
    if tracer is None or (parent is None and _unsampled()):
        return _NO_SPAN
    started = tracer.start_span(name, context=parent, kind=_kind(kind), attributes=attributes,
                                links=list(links), record_exception=False,
                                set_status_on_exception=False)
    return _Traced(started)


def _unsampled() -> bool:
    """Whether the current span belongs to a trace that is not being recorded."""
    from opentelemetry.trace import get_current_span

    current = get_current_span()
    return current.get_span_context().is_valid and not current.is_recording()


def started(
    name: str, kind: Kind = "internal", attributes: Attributes | None = None
) -> Span | None:
    """A child of the current span that is *not* made current, for work that outlives
    a block (a stream): the caller ends it. None while tracing is off or the trace is
    not sampled."""
    tracer = _tracer
    if tracer is None or _unsampled():
        return None
    return tracer.start_span(name, kind=_kind(kind), attributes=attributes,
                             record_exception=False, set_status_on_exception=False)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, when it is sampled (an unsampled
    trace is never exported: its ids would lead nowhere)."""
    if _tracer is None:
        return None
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def exemplar() -> dict[str, str] | None:
    """The Prometheus exemplar labels of the current sampled span, if any."""
    ids = current_ids()
    return {"trace_id": ids[0], "span_id": ids[1]} if ids is not None else None


def inject(headers: MutableMapping[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current span to outgoing headers."""
    if _tracer is None:
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    TraceContextTextMapPropagator().inject(headers)


def _extract(headers: Iterable[tuple[bytes, bytes]]) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers
               if name in (b"traceparent", b"tracestate")}
    return TraceContextTextMapPropagator().extract(carrier) if carrier else None


def remote_context(trace_id: object, span_id: object) -> Any:
    """The context of a span in another process, known by its ids (an event's
    ``trace_id``/``span_id``), or None when they are not well-formed ids."""
    if not (isinstance(trace_id, str) and isinstance(span_id, str)
            and _HEX_TRACE.fullmatch(trace_id) and _HEX_SPAN.fullmatch(span_id)):
        return None
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    return NonRecordingSpan(SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)))


def consumer_span(
    group: str, events: Iterable[object], count: int
) -> contextlib.AbstractContextManager[Span | None]:
    """The span of consumer group ``group`` handling a batch of ``count`` records: linked
    to the span that published each of the ``events`` (their ``trace_id``/``span_id``;
    the iterable is not even read while tracing is off). A batch whose events all come from one
    trace (one request: the usual case at low rates) is also the child of its first
    publishing span, so the request's trace reaches into the consumer; a batch mixing
    traces starts a trace of its own."""
    if _tracer is None:
        return _NO_SPAN
    from opentelemetry.trace import Link, set_span_in_context

    producers = [p for p in (remote_context(getattr(e, "trace_id", None),
                                            getattr(e, "span_id", None)) for e in events) if p]
    links = [Link(p.get_span_context()) for p in producers]
    one_trace = len({link.context.trace_id for link in links}) == 1
    parent = set_span_in_context(producers[0]) if one_trace else None
    return span(f"{group} process", "consumer", {
        "messaging.system": "kafka", "messaging.operation.type": "process",
        "messaging.consumer.group.name": group, "messaging.batch.message_count": count,
    }, parent=parent or _root(), links=links)


def _root() -> Any:
    from opentelemetry.context import Context

    return Context()  # a new trace: not a child of whatever happens to be current


def server_spans(app: Any, service: str, *, polled: frozenset[str] = frozenset()) -> Any:
    """``app`` (ASGI) with a server span per HTTP request, continuing the caller's
    ``traceparent``; ``app`` itself while tracing is off. Probes and scrapes
    (``/health``, ``/ready``, ``/metrics``) are not traced, nor requests to a ``polled``
    path that arrive outside any trace (the gateway's periodic look at rag_core's index
    versions would otherwise start a trace every few seconds)."""
    if _tracer is None:
        return app
    from opentelemetry.trace import StatusCode, set_span_in_context

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path")
        untraced = path in _UNTRACED_PATHS or (
            path in polled and not any(k == b"traceparent" for k, _ in scope["headers"]))
        if scope["type"] != "http" or untraced or _tracer is None:
            await app(scope, receive, send)
            return
        method = scope["method"]
        started = _tracer.start_span(
            method, context=_extract(scope["headers"]), kind=_kind("server"),
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "http"),
                        "ragward.service": service},
            record_exception=False, set_status_on_exception=False,
        )
        status = 500

        async def send_watched(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        from opentelemetry import context

        token = context.attach(set_span_in_context(started))
        try:
            await app(scope, receive, send_watched)
        finally:
            route = scope.get("path_template")
            if route:  # the template, never the raw path (it can hold user text)
                started.update_name(f"{method} {route}")
                started.set_attribute("http.route", route)
            started.set_attribute("http.response.status_code", status)
            if status >= 500:
                started.set_status(StatusCode.ERROR)
                started.set_attribute("error.type", str(status))
            started.end()
            context.detach(token)

    return traced


def add_trace_ids(_: object, __: str, event: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` and ``span_id`` of the current span on every
    line logged inside one (nothing while tracing is off)."""
    if _tracer is not None:
        ids = current_ids()
        if ids is not None:
            event.setdefault("trace_id", ids[0])
            event.setdefault("span_id", ids[1])
    return event


def _gen_ai(system: str, model: str) -> Attributes:
    return {"gen_ai.operation.name": "chat", "gen_ai.system": system,
            "gen_ai.provider.name": system, "gen_ai.request.model": model}


def llm_call(system: str, model: str) -> contextlib.AbstractContextManager[Span | None]:
    """The GenAI span of one LLM call (OpenTelemetry GenAI semantic conventions): the
    caller adds ``gen_ai.usage.input_tokens`` / ``output_tokens``."""
    return span(f"chat {model}", "client", _gen_ai(system, model))


def llm_stream(system: str, model: str) -> Span | None:
    """The GenAI span of one streamed LLM call, not made current (:func:`started`); the
    caller adds the usage, ``gen_ai.response.time_to_first_chunk`` and ends it."""
    return started(f"chat {model}", "client", _gen_ai(system, model))
