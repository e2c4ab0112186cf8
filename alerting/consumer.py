"""``ragward consumer alerts``: the alert service fed by its own consumer group.

It consumes the audit and usage topics (status events travel on the usage
topic) into telemetry's :class:`~telemetry.rolling.RollingMetrics`, runs an
:class:`~alerting.service.AlertService` over that view, publishes every alert
state change to ``ragward.alerts.v1`` and serves::

    GET /metrics      Prometheus text: ragward_alert_notifications_total{receiver,outcome},
                      ragward_alerts_firing{alertname}, ragward_consumer_lag{group}, ...
    GET /api/alerts   current alerts and active silences (JSON)
    GET /health       liveness
    GET /ready        503 until the consumer has joined its group

A new group starts at the topics' end (``from_beginning=False``): replaying old
events would only make the dead-man's switch and lag rules fire while catching
up. Run one instance per deployment (see docs/alerting.md): instances of one
group would each see only their partitions, and instances in different groups
would each notify.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from litestar import Litestar, Response, get
from prometheus_client import CollectorRegistry

from alerting.clock import Clock, SystemClock
from alerting.service import AlertConfig, AlertService
from ragward.errors import ConfigError
from ragward.http_errors import EXCEPTION_HANDLERS
from ragward.settings import Settings
from telemetry.bus import EventBus
from telemetry.consumer import ConsumerConfig
from telemetry.consumer_http import Lifespan, consumer_routes, metrics_guards
from telemetry.metrics_consumer import MetricsConsumer

log = structlog.get_logger(__name__)

DEFAULT_GROUP = "ragward-alerts"


class AlertConsumer:
    """A metrics consumer (EventConsumer → RollingMetrics) feeding an AlertService,
    started and stopped together."""

    def __init__(
        self,
        consumer: ConsumerConfig,
        alerts: AlertConfig,
        bus: EventBus,
        *,
        group_id: str = DEFAULT_GROUP,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        from_beginning: bool = False,
        **service_options: Any,
    ) -> None:
        """``consumer`` says what the metrics view reads (audit and usage events),
        ``alerts`` configures the :class:`AlertService`; ``service_options`` go to it too
        (rules, retry, notifiers, ...)."""
        self.config = consumer
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock or SystemClock()
        self.rolling = MetricsConsumer(consumer, bus, group_id=group_id, registry=self.registry,
                                       clock=self.clock.now, from_beginning=from_beginning,
                                       export_rolling=False)
        self.view = self.rolling.view
        self.loop = self.rolling.loop
        self.publisher = bus.publisher()
        self.service = AlertService(alerts, self.view, self.publisher, clock=self.clock,
                                    registry=self.registry, **service_options)

    @property
    def ready(self) -> bool:
        return self.loop.ready and self.loop.running

    def not_ready_reason(self) -> str | None:
        """None when ready, else why not (``/ready``'s 503 reason)."""
        return None if self.ready else self.loop.last_error or "consumer not running"

    async def start(self, *, run_loop: bool = True) -> None:
        await self.publisher.start()
        try:
            await self.loop.start()
            try:
                await self.service.start(run_loop=run_loop)
            except BaseException:
                await self.loop.stop()
                raise
        except BaseException:
            await self.publisher.stop()
            raise
        log.info("alert_consumer_started", group=self.loop.group_id, topics=self.loop.topics)

    async def stop(self) -> None:
        try:
            await self.service.stop()
        finally:
            try:
                await self.loop.stop()
            finally:
                await self.publisher.stop()
        log.info("alert_consumer_stopped", group=self.loop.group_id, handled=self.loop.handled)


def create_alerts_app(
    consumer: AlertConsumer,
    *,
    lifespans: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
) -> Litestar:
    """The consumer's HTTP app; its lifespan starts and stops the consumer. ``lifespans``
    run first (the metrics access: ``/metrics`` and ``/api/alerts`` name tenants)."""
    protect = consumer.config.protect_metrics

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await consumer.start()
        try:
            yield
        finally:
            await consumer.stop()

    @get("/api/alerts", sync_to_thread=False, guards=metrics_guards(protect))
    def alerts() -> Response[dict[str, Any]]:
        return Response(consumer.service.snapshot(), headers={"Cache-Control": "no-store"})

    routes = consumer_routes(consumer.registry, group=consumer.loop.group_id,
                             not_ready=consumer.not_ready_reason, protect_metrics=protect)
    return Litestar(
        route_handlers=[*routes, alerts],
        lifespan=[*lifespans, lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        debug=False,
    )


def main(settings: Settings, args: argparse.Namespace, *, access: Lifespan | None = None) -> int:
    """``ragward consumer alerts [--port P] [--group G]``; ``access`` guards its HTTP
    (the composition hands in the gateway's token check: ``ragward/consumers.py``)."""
    import uvicorn

    from alerting.configuration import alert_config
    from telemetry.configuration import kafka_config, metrics_consumer_config
    from telemetry.kafka_bus import KafkaBus

    if not settings.kafka_bootstrap:
        raise ConfigError(
            "RAGWARD_KAFKA_BOOTSTRAP: `ragward consumer alerts` reads the Kafka topics; set it "
            "(without Kafka, `ragward serve` runs alerting in-process)"
        )
    # Its own spool directory: the gateway on this host owns DATA_DIR/spool.
    bus = KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / "spool-alerts"))
    consumer = AlertConsumer(metrics_consumer_config(settings), alert_config(settings), bus,
                             group_id=getattr(args, "group", None) or DEFAULT_GROUP)
    app = create_alerts_app(consumer, lifespans=[access] if access else [])
    port = getattr(args, "port", None) or settings.consumer_port
    log.info("alert_consumer_serving", host=settings.host, port=port)
    uvicorn.run(app, host=settings.host, port=port, log_config=None, access_log=False)
    return 0
