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

With ``RAGWARD_METRICS_AUTH=token`` every route that shows tenants' figures
(``/metrics`` here, the dashboard and snapshot of
:func:`telemetry.metrics_consumer.metrics_router`, the alert consumer's
``/api/alerts``) takes :func:`metrics_guard`: a bearer token whose roles grant
``metrics:read``, checked by the :class:`MetricsAccess` the app's lifespan put in
``app.state`` (the gateway's own authenticator in the gateway and ``serve``;
:func:`gateway.auth.metrics_access_lifespan` in a consumer). No access there
while one is required answers 503, never the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from litestar import Litestar, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.types import Guard
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from ragward.errors import DependencyUnavailable
from telemetry.exposition import render

# What a consumer's app runs around its life, e.g. the token check its /metrics needs.
Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]

NotReadyReason = Callable[[], str | None]
"""Returns None when the consumer is ready, else why it is not (the 503's ``reason``)."""

# Litestar appends "; charset=utf-8" to every text/ media type: give it the rest, so the
# header is exactly CONTENT_TYPE_LATEST rather than one with the charset twice (which
# strict Content-Type parsers, Go's among them, refuse).
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.partition("; charset=")[0]
METRICS_ACCESS = "metrics_access"
"""The ``app.state`` key of the app's :class:`MetricsAccess`."""


class MetricsAccess(Protocol):
    async def check(self, authorization: str | None) -> None:
        """Return if the ``Authorization`` header's bearer token may read metrics; raise
        ``Unauthenticated`` (401) or ``Forbidden`` (403) otherwise."""
        ...


def metrics_guards(required: bool) -> list[Guard]:
    """The guards of a route that shows tenants' figures: none unless ``required``."""
    if not required:
        return []

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        access: MetricsAccess | None = connection.app.state.get(METRICS_ACCESS)
        if access is None:  # fail closed: a required check that cannot run refuses
            raise DependencyUnavailable("metrics access control is not ready")
        await access.check(connection.headers.get("authorization"))

    return [guard]


def consumer_routes(
    registry: CollectorRegistry, *, group: str, not_ready: NotReadyReason,
    protect_metrics: bool = False,
) -> list[HTTPRouteHandler]:
    """``/metrics``, ``/health`` and ``/ready`` for a consumer of group ``group``.

    ``not_ready`` is asked on every ``/ready``: None means ready, a string is the reason
    given with the 503. ``protect_metrics``: ``/metrics`` takes :func:`metrics_guards`.
    """

    @get("/metrics", media_type=METRICS_MEDIA_TYPE, sync_to_thread=False,
         guards=metrics_guards(protect_metrics))
    def metrics() -> Response[bytes]:
        return Response(render(registry), media_type=METRICS_MEDIA_TYPE)

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
