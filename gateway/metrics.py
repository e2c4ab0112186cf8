"""The gateway's own Prometheus metrics (route templates, never raw paths)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ragward import tracing

if TYPE_CHECKING:
    from telemetry.events import ChatSummary

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "ragward_gateway_requests_total", "Requests answered, by route template and status.",
            ["route", "method", "status"], registry=registry,
        )
        self.duration = Histogram(
            "ragward_gateway_request_duration_seconds", "Time to the response's first byte.",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            "ragward_gateway_in_flight", "Requests being handled now.", registry=registry,
        )
        self.events = Counter(
            "ragward_gateway_events_published_total",
            "Audit and usage events made durable, by how.", ["topic", "path"], registry=registry,
        )
        self._circuit = Gauge(
            "ragward_gateway_circuit_state",
            "rag_core circuit breaker: 0 closed, 1 half-open, 2 open.", registry=registry,
        )
        self._quota_degraded = Gauge(
            "ragward_gateway_quota_degraded",
            "1 while a quota control runs without Redis.", ["control"], registry=registry,
        )
        self._spool_bytes = Gauge(
            "ragward_gateway_spool_bytes", "Audit spool bytes waiting for Kafka.",
            registry=registry,
        )
        self._spool_capacity = Gauge(
            "ragward_gateway_spool_capacity_bytes", "Audit spool capacity.", registry=registry,
        )
        self._tasks = Gauge(
            "ragward_gateway_event_loop_tasks",
            "asyncio tasks alive in the gateway's event loop (a leak shows as growth).",
            registry=registry,
        )

        self.ttft = Histogram(
            "ragward_gateway_time_to_first_token_seconds",
            "Chat completions: request arrival to the first answer text sent.",
            ["streamed"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.stream_duration = Histogram(
            "ragward_gateway_stream_duration_seconds",
            "Streamed chat completions: request arrival to the stream's end.",
            ["outcome"], buckets=STREAM_BUCKETS, registry=registry,
        )
        self.streamed_tokens = Counter(
            "ragward_gateway_streamed_tokens_total",
            "Completion tokens of streamed chat answers.", registry=registry,
        )
        self.stream_disconnects = Counter(
            "ragward_gateway_stream_disconnects_total",
            "Streamed chat answers the client left before the end.", registry=registry,
        )
        # The label children the request path uses, looked up once (route templates,
        # methods and statuses: the same bounded sets the series themselves have).
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._published: dict[tuple[str, str], Counter] = {}

    def observe_stream(self, chat: ChatSummary, *, disconnected: bool) -> None:
        exemplar = tracing.exemplar()
        if chat.ttft_ms is not None:
            self.ttft.labels(str(chat.streamed).lower()).observe(chat.ttft_ms / 1000, exemplar)
        if chat.duration_ms is not None:
            self.stream_duration.labels(chat.outcome).observe(chat.duration_ms / 1000, exemplar)
        self.streamed_tokens.inc(chat.completion_tokens)
        if disconnected:
            self.stream_disconnects.inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self._answered.get((route, method, status))
        if children is None:  # prometheus_client's labels() costs more than the increment
            children = self._answered[route, method, status] = (
                self.requests.labels(route, method, str(status)), self.duration.labels(route))
        children[0].inc()
        # with tracing on, the bucket's exemplar leads to this request's trace (OpenMetrics)
        children[1].observe(seconds, tracing.exemplar())

    def published(self, topic: str, path: str) -> None:
        """An event made durable on ``topic`` by ``path`` (kafka, spool, ...)."""
        child = self._published.get((topic, path))
        if child is None:
            child = self._published[topic, path] = self.events.labels(topic, path)
        child.inc()

    def watch(
        self,
        circuit_state: Callable[[], float],
        quota_status: Callable[[], dict[str, bool]],
        spool: Callable[[], tuple[int, int]],
        tasks: Callable[[], int] = lambda: 0,
    ) -> None:
        """Gauges read live state when scraped, so they can never go stale."""
        self._circuit.set_function(circuit_state)
        for control in ("rpm", "tokens"):
            self._quota_degraded.labels(control).set_function(_degraded(quota_status, control))
        self._spool_bytes.set_function(lambda: float(spool()[0]))
        self._spool_capacity.set_function(lambda: float(spool()[1]))
        self._tasks.set_function(lambda: float(tasks()))


def _degraded(status: Callable[[], dict[str, bool]], control: str) -> Callable[[], float]:
    return lambda: float(status().get(control, False))
