"""``ragward serve``: the whole system in one process.

gateway + rag_core + the metrics, alert and audit consumers, on one event bus.
With nothing configured that is the embedded default — in-process bus, cache
and quotas, SQLite audit store, offline RAG — so a newcomer sees it all work
with one command. ``RAGWARD_KAFKA_BOOTSTRAP`` / ``RAGWARD_REDIS_URL`` switch the
same code to Kafka and Redis; ``RAGWARD_RAG_CORE_URL`` fronts a remote rag_core
instead of the in-process one.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from litestar import Litestar
from prometheus_client import CollectorRegistry

from alerting.service import AlertService
from gateway.app import create_app
from gateway.components import store_reader
from gateway.forward import LocalUpstream, Upstream
from gateway.metrics import GatewayMetrics
from ragward.settings import Settings
from telemetry.audit_consumer import AuditConsumer
from telemetry.audit_store import open_store
from telemetry.factory import make_bus
from telemetry.metrics_consumer import MetricsConsumer, metrics_router


def create_serve_app(settings: Settings) -> Litestar:
    """Compose every part around one bus and one metrics registry."""
    registry = CollectorRegistry()
    bus = make_bus(settings)
    publisher = bus.publisher()
    metrics_consumer = MetricsConsumer(settings, bus, registry=registry)
    store = open_store(settings)
    audit_consumer = AuditConsumer.from_bus(settings, bus, store, registry=registry)
    alerts = AlertService(settings, metrics_consumer.view, publisher, registry=registry)

    service = None
    upstream: Upstream | None = None
    if not settings.rag_core_url:
        from rag_core.service import build_service

        service = build_service(settings)
        upstream = LocalUpstream(service)

    @asynccontextmanager
    async def run_parts(_: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # Callbacks run in reverse: the store closes after the audit consumer has
            # written its last batch, the publisher stops after everyone publishing.
            stack.push_async_callback(store.close)
            await publisher.start()
            stack.push_async_callback(publisher.stop)
            if service is not None:
                await service.start()
                stack.push_async_callback(service.stop)
            for part in (metrics_consumer, audit_consumer, alerts):
                await part.start()
                stack.push_async_callback(part.stop)
            yield

    return create_app(
        settings,
        metrics=GatewayMetrics(registry),
        routes=[metrics_router(metrics_consumer)],
        lifespans=[run_parts],
        upstream=upstream,
        publisher=publisher,
        audit_reader=store_reader(store),
    )


def main(settings: Settings, args: argparse.Namespace) -> int:
    app = create_serve_app(settings)
    uvicorn.run(
        app, host=args.host or settings.host, port=args.port or settings.port,
        log_config=None, access_log=False, loop="uvloop", http="httptools",
    )
    return 0
