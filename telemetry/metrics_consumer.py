"""The metrics consumer: audit and usage events in, rolling metrics out.

``ragward consumer metrics [--port P] [--group G]`` runs it alone (consumer
group ``ragward-metrics`` by default; scale by running more, each owns some
partitions — merge their state with :meth:`RollingMetrics.merge` for exact
totals). ``ragward serve`` embeds it::

    consumer = MetricsConsumer(config, bus, registry=registry)   # registry: serve's /metrics
    await consumer.start()            # in serve's lifespan
    ...
    await consumer.stop()             # in its finally
    app = Litestar(route_handlers=[..., metrics_router(consumer)])   # /dashboard, snapshot API

HTTP (its own app, :func:`create_metrics_app`):

* ``GET /metrics`` — Prometheus text (the registry passed in, fresh by default)
* ``GET /api/metrics/snapshot`` — JSON: per-tenant figures for 1m/5m/1h,
  overall figures, an hour of per-minute history per tenant, gateway status,
  consumer lag and counters
* ``GET /dashboard`` — the live dashboard (SVG charts, no CDN)
* ``GET /health``, ``GET /ready`` (503 until the consumer joined its group)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Any

import structlog
from litestar import Litestar, Response, Router, get
from prometheus_client import CollectorRegistry

from ragward.http_errors import EXCEPTION_HANDLERS
from ragward.settings import Settings
from telemetry.bus import EventBus
from telemetry.consumer import ConsumerConfig, Delivery, EventConsumer, start_with_retry
from telemetry.consumer_http import Lifespan, consumer_routes, metrics_guards
from telemetry.exposition import RollingCollector
from telemetry.rolling import RollingMetrics, metrics_decoder

log = structlog.get_logger(__name__)

DEFAULT_GROUP = "ragward-metrics"


class MetricsConsumer:
    """Consumes the audit and usage topics into a :class:`RollingMetrics` view."""

    def __init__(
        self,
        config: ConsumerConfig,
        bus: EventBus,
        *,
        group_id: str = DEFAULT_GROUP,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        from_beginning: bool = True,
        max_records: int = 5000,
        export_rolling: bool = True,
    ) -> None:
        """``config`` names the audit and usage topics and the verifier that checks every
        event's signature. ``export_rolling=False`` keeps the rolling figures out of
        ``registry``: a process that only reads the view (the alert consumer) must not
        export a second copy of the metrics consumer's counters, or every ``sum()`` over
        them in Prometheus doubles."""
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.view = RollingMetrics(clock, lag_source=lambda: self.loop.lag)
        self.loop = EventConsumer(
            bus,
            list(config.topics),
            group_id,
            self._handle,
            dead_letter_topic=config.dead_letter_topic,
            dedupe_window=config.dedupe_window,
            registry=self.registry,
            from_beginning=from_beginning,
            max_records=max_records,
            decoder=metrics_decoder,
            verifier=config.verifier,
            rejected=self.view.note_rejected,
        )
        if export_rolling:
            self.registry.register(RollingCollector(self.view))
        self._snapshot: tuple[float, dict[str, Any]] | None = None

    @property
    def group_id(self) -> str:
        return self.loop.group_id

    @property
    def ready(self) -> bool:
        return self.loop.ready and self.loop.running

    def not_ready_reason(self) -> str | None:
        """None when ready, else why not (``/ready``'s 503 reason)."""
        return None if self.ready else self.loop.last_error or "consumer not running"

    async def start(self) -> None:
        await self.loop.start()
        log.info("metrics_consumer.started", group=self.group_id, topics=self.loop.topics)

    async def start_with_retry(self, backoff_max_s: float = 10.0) -> None:
        """Start, retrying with backoff while Kafka is unreachable (``/ready`` says why)."""

        def failed(exc: Exception) -> None:
            self.loop.last_error = repr(exc)

        await start_with_retry(self.start, failed=failed, event="metrics_consumer.start_failed",
                               backoff_max_s=backoff_max_s)

    async def stop(self) -> None:
        await self.loop.stop()
        log.info("metrics_consumer.stopped", group=self.group_id, handled=self.loop.handled)

    async def _handle(self, batch: list[Delivery]) -> None:
        self.view.ingest([d.event for d in batch])

    def snapshot(self, max_age_s: float = 1.0) -> dict[str, Any]:
        """The dashboard's JSON, recomputed at most once per ``max_age_s``."""
        now = time.monotonic()
        if self._snapshot is not None and now - self._snapshot[0] < max_age_s:
            return self._snapshot[1]
        data = self.view.snapshot(lag=self.loop.lag)
        data["consumer"].update(
            group=self.group_id, consumed=self.loop.consumed, handled=self.loop.handled,
            duplicates=self.loop.duplicates, dead_lettered=self.loop.dead_lettered,
            rejected=self.loop.rejected,
            ready=self.ready,
        )
        self._snapshot = (now, data)
        return data


# -------------------------------------------------------------------- HTTP


def dashboard_html(snapshot_url: str = "api/metrics/snapshot") -> str:
    """The dashboard page with its script and styles inlined (package data)."""
    static = resources.files("telemetry") / "static"
    page = (static / "dashboard.html").read_text(encoding="utf-8")
    return (
        page.replace("/*STYLE*/", (static / "dashboard.css").read_text(encoding="utf-8"))
        .replace("/*SCRIPT*/", (static / "dashboard.js").read_text(encoding="utf-8"))
        .replace("__SNAPSHOT_URL__", snapshot_url)
    )


def metrics_router(consumer: MetricsConsumer, path: str = "/") -> Router:
    """``GET {path}dashboard`` and ``GET {path}api/metrics/snapshot``, to mount in any
    Litestar app (``ragward serve``). The page fetches the snapshot by absolute path.
    Both show every tenant's figures: with ``RAGWARD_METRICS_AUTH=token`` they take
    :func:`~telemetry.consumer_http.metrics_guards`."""
    prefix = "/" + path.strip("/") if path.strip("/") else ""
    page = dashboard_html(f"{prefix}/api/metrics/snapshot")

    @get("/dashboard", media_type="text/html", include_in_schema=False, sync_to_thread=False)
    def dashboard() -> Response[str]:
        return Response(page, media_type="text/html",
                        headers={"Cache-Control": "no-cache",
                                 "Content-Security-Policy": "default-src 'self'; "
                                 "script-src 'unsafe-inline'; style-src 'unsafe-inline'"})

    @get("/api/metrics/snapshot", summary="Rolling metrics per tenant and an hour of history",
         sync_to_thread=False)
    def snapshot() -> Response[dict[str, Any]]:
        return Response(consumer.snapshot(), headers={"Cache-Control": "no-store"})

    return Router(path=prefix or "/", route_handlers=[dashboard, snapshot],
                  guards=metrics_guards(consumer.config.protect_metrics))


def create_metrics_app(
    consumer: MetricsConsumer,
    *,
    manage_consumer: bool = True,
    lifespans: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
) -> Litestar:
    """The metrics consumer's own app: /metrics, /api/metrics/snapshot, /dashboard,
    /health, /ready. With ``manage_consumer`` its lifespan starts the consumer (retrying
    until Kafka answers) and stops it. ``lifespans`` run first (the metrics access)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # started in the background: the HTTP side answers (/ready: 503 and why) while
        # Kafka is still unreachable
        starter = asyncio.create_task(consumer.start_with_retry()) if manage_consumer else None
        try:
            yield
        finally:
            if starter is not None:
                starter.cancel()
                await asyncio.gather(starter, return_exceptions=True)
                await consumer.stop()

    routes = consumer_routes(consumer.registry, group=consumer.group_id,
                             not_ready=consumer.not_ready_reason,
                             protect_metrics=consumer.config.protect_metrics)
    return Litestar(
        route_handlers=[*routes, metrics_router(consumer)],
        lifespan=[*lifespans, lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        debug=False,
    )


def main(settings: Settings, args: argparse.Namespace, *, access: Lifespan | None = None) -> int:
    """``ragward consumer metrics [--port P] [--group G]``; ``access`` guards ``/metrics``
    (the composition hands in the gateway's token check: ``ragward/consumers.py``)."""
    import uvicorn

    from ragward.errors import ConfigError
    from ragward.settings import env_name
    from telemetry.configuration import make_bus, metrics_consumer_config

    if not settings.kafka_bootstrap:  # alone, an in-process bus would never see an event
        raise ConfigError(f"{env_name('kafka_bootstrap')} must be set for "
                          "`ragward consumer metrics` (`ragward serve` embeds it otherwise)")
    consumer = MetricsConsumer(metrics_consumer_config(settings), make_bus(settings),
                               group_id=getattr(args, "group", None) or DEFAULT_GROUP)
    app = create_metrics_app(consumer, lifespans=[access] if access else [])
    port = getattr(args, "port", None) or settings.consumer_port
    log.info("metrics_consumer.serving", host=settings.host, port=port)
    uvicorn.run(app, host=settings.host, port=port, log_config=None, access_log=False)
    return 0
