"""The HTTP routes every ragward consumer serves, built in one place.

::

    GET /metrics   Prometheus text of the registry passed in
    GET /health    200 {"status": "ok"} while the process answers (liveness)
    GET /ready     200 {"status": "ready", "group": G}
                   503 {"status": "unavailable", "reason": "..."} while not ready

``ragward consumer metrics`` (:func:`telemetry.metrics_consumer.create_metrics_app`),
``ragward consumer alerts`` (:func:`alerting.consumer.create_alerts_app`) and
``ragward consumer audit`` (:func:`telemetry.audit_consumer.create_audit_app`) add their
own routes and lifespan around these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

NotReadyReason = Callable[[], str | None]
"""Returns None when the consumer is ready, else why it is not (the 503's ``reason``)."""

# Litestar appends "; charset=utf-8" to every text/ media type: give it the rest, so the
# header is exactly CONTENT_TYPE_LATEST rather than one with the charset twice (which
# strict Content-Type parsers, Go's among them, refuse).
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.partition("; charset=")[0]


def consumer_routes(
    registry: CollectorRegistry, *, group: str, not_ready: NotReadyReason
) -> list[HTTPRouteHandler]:
    """``/metrics``, ``/health`` and ``/ready`` for a consumer of group ``group``.

    ``not_ready`` is asked on every ``/ready``: None means ready, a string is the reason
    given with the 503.
    """

    @get("/metrics", media_type=METRICS_MEDIA_TYPE, sync_to_thread=False)
    def metrics() -> Response[bytes]:
        return Response(generate_latest(registry), media_type=METRICS_MEDIA_TYPE)

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", sync_to_thread=False)
    def ready() -> Response[dict[str, Any]]:
        reason = not_ready()
        if reason is None:
            return Response({"status": "ready", "group": group})
        return Response({"status": "unavailable", "reason": reason}, status_code=503)

    return [metrics, health, ready]
