"""Composition of the HTTP processes: ``ragward serve`` (everything) and ``ragward gateway``.

``ragward serve`` is the whole system in one process:
gateway + rag_core + the metrics, alert and audit consumers, on one event bus.
With nothing configured that is the embedded default — in-process bus, cache
and quotas, SQLite audit store, offline RAG — so a newcomer sees it all work
with one command. ``RAGWARD_KAFKA_BOOTSTRAP`` / ``RAGWARD_REDIS_URL`` switch the
same code to Kafka and Redis; ``RAGWARD_RAG_CORE_URL`` fronts a remote rag_core
instead of the in-process one. ``ragward gateway`` is the gateway alone (below).
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from litestar import Litestar
from prometheus_client import CollectorRegistry

from alerting.configuration import alert_config
from alerting.service import AlertService
from gateway.app import create_app
from gateway.forward import LocalUpstream, Upstream
from gateway.metrics import GatewayMetrics
from ragward.errors import ConfigError
from ragward.settings import Settings, env_name
from telemetry.audit_consumer import AuditConsumer
from telemetry.audit_store import open_store, store_reader
from telemetry.configuration import (
    audit_consumer_config,
    audit_store_config,
    make_bus,
    metrics_consumer_config,
)
from telemetry.event_keys import signer_from_settings, verifier_from_settings
from telemetry.metrics_consumer import MetricsConsumer, metrics_router


def create_serve_app(settings: Settings) -> Litestar:
    """Compose every part around one bus and one metrics registry."""
    registry = CollectorRegistry()
    bus = make_bus(settings)
    publisher = bus.publisher()
    # One process signs and verifies: unless keys are configured, the dev pair kept in the
    # data dir serves both, even on Kafka (telemetry.event_keys logs which is in effect).
    signer = signer_from_settings(settings, dev_keys=True)
    verifier = verifier_from_settings(settings, dev_keys=True)
    if signer.key_id not in verifier.keys:  # it would refuse every event it makes itself
        raise ConfigError(f"the signing key {signer.key_id!r} is not in the key set "
                          f"{env_name('event_keys')} names: add it, or set both or neither")
    metrics_consumer = MetricsConsumer(metrics_consumer_config(settings, verifier), bus,
                                       registry=registry)
    store = open_store(audit_store_config(settings))
    audit_consumer = AuditConsumer.from_bus(audit_consumer_config(settings, verifier), bus,
                                            store, registry=registry)
    alerts = AlertService(alert_config(settings), metrics_consumer.view, publisher,
                          registry=registry)

    service = None
    upstream: Upstream | None = None
    if not settings.rag_core_url:
        from rag_core.configuration import build_service

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
        signer=signer,
        audit_reader=store_reader(store),
    )


async def freeze_heap(_: Litestar) -> None:
    """Once every client, index and table is built: leave them out of the cyclic
    collector's scans (``gc.freeze``). They live as long as the process, yet each full
    collection walked all of them, a pause on the event loop that grew with the heap
    and cost every request a share of its CPU. Only serving processes do this: a test
    process that builds many apps must still collect the ones it is done with."""
    gc.collect()
    gc.freeze()


def _run(app: Litestar, settings: Settings, args: argparse.Namespace) -> int:
    app.on_startup.append(freeze_heap)  # runs after the lifespans have built everything
    uvicorn.run(
        app, host=args.host or settings.host, port=args.port or settings.port,
        log_config=None, access_log=False, loop="uvloop", http="httptools",
    )
    return 0


def main(settings: Settings, args: argparse.Namespace) -> int:
    return _run(create_serve_app(settings), settings, args)


def create_gateway_app(settings: Settings) -> Litestar:
    """``ragward gateway``: the gateway alone, in front of ``RAGWARD_RAG_CORE_URL``; with
    ``RAGWARD_AUDIT_DSN`` it serves ``/v1/audit`` from that (shared PostgreSQL) store."""
    if settings.rag_core_url is None:
        raise ConfigError(f"{env_name('rag_core_url')} must name the rag_core to forward to")
    signer = signer_from_settings(settings)  # before serving: a missing key stops start-up
    if not settings.audit_dsn:
        return create_app(settings, signer=signer)
    store = open_store(audit_store_config(settings))

    @asynccontextmanager
    async def close_store(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await store.close()

    return create_app(settings, lifespans=[close_store], audit_reader=store_reader(store),
                      signer=signer)


def gateway_main(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward gateway``: one process, or with ``--workers N`` a supervisor of N
    (:mod:`ragward.workers`); ``--worker-slot`` is how the supervisor starts worker i."""
    from ragward import workers

    host, port = args.host or settings.host, args.port or settings.port
    if args.worker_slot is not None:
        app = create_gateway_app(workers.worker_settings(settings, args.worker_slot))
        app.on_startup.append(freeze_heap)
        server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, access_log=False, loop="uvloop", http="httptools"))
        server.run(sockets=[workers.reuse_port_socket(host, port)])
        return 0
    count = args.workers or settings.gateway_workers
    if count > 1:
        if settings.rag_core_url is None:  # fail here, once, not in every worker
            raise ConfigError(f"{env_name('rag_core_url')} must name the rag_core to forward to")
        prefix = workers.ragward_command() + [
            flag for name, flag in (("config", "--config"), ("log_format", "--log-format"),
                                    ("log_level", "--log-level"))
            for flag in ([flag, str(getattr(args, name))] if getattr(args, name, None) else [])]
        return workers.supervise(count, host, port, prefix)
    return _run(create_gateway_app(settings), settings, args)
