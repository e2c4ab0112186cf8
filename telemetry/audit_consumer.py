"""The audit consumer: the audit topic into the hash-chained store, nothing lost or doubled.

``ragward consumer audit [--port P] [--group G]`` runs it alone on Kafka (group
``ragward-audit`` by default); ``ragward serve`` embeds :class:`AuditConsumer`
on whichever bus it runs.

The loop: poll a batch → write it in ONE store transaction (the store skips
event ids it already holds, so a redelivered batch does not extend the chain)
→ only then commit the offsets. A store failure is retried with back-off on the
same batch and nothing is committed meanwhile; stopping between the write and
the commit only means the batch is delivered again and skipped. Retention
(``prune``) runs on start and then every ``prune_interval_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from ragward.errors import ConfigError
from ragward.settings import Settings
from telemetry.audit_store import AppendResult, AuditStore, open_store
from telemetry.bus import EventBus, Record, Subscription

log = structlog.get_logger(__name__)

DEFAULT_GROUP = "ragward-audit"
_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class AuditMetrics:
    """The audit consumer's Prometheus metrics, on a registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "ragward_audit_records_total",
            "Audit records written to the store.",
            registry=registry,
        )
        self.duplicates = Counter(
            "ragward_audit_duplicates_total",
            "Audit events skipped because their event_id or offset was already stored.",
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "ragward_audit_store_commit_seconds",
            "Time to write one batch in one store transaction.",
            buckets=_COMMIT_BUCKETS,
            registry=registry,
        )


class AuditConsumer:
    """Consumes the audit topic into an :class:`AuditStore`.

    The consumer owns the subscription's lifecycle (``start``/``stop`` start and
    stop it); the store is only borrowed, because the gateway queries it too.
    """

    def __init__(
        self,
        store: AuditStore,
        subscription: Subscription,
        *,
        topic: str,
        registry: CollectorRegistry | None = None,
        prune_interval_s: float = 3600.0,
        poll_timeout_s: float = 0.5,
        max_records: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.subscription = subscription
        self.topic = topic
        self.metrics = AuditMetrics(registry if registry is not None else CollectorRegistry())
        self.prune_interval_s = prune_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.max_records = max_records
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._next_prune = 0.0
        self.written = 0
        self.duplicates = 0

    @classmethod
    def from_bus(
        cls,
        settings: Settings,
        bus: EventBus,
        store: AuditStore,
        *,
        group: str = DEFAULT_GROUP,
        **kwargs: Any,
    ) -> AuditConsumer:
        subscription = bus.subscribe([settings.topic_audit], group, from_beginning=True)
        return cls(store, subscription, topic=settings.topic_audit, **kwargs)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping.clear()
        await self.subscription.start()
        self._task = asyncio.create_task(self._run(), name="audit-consumer")
        log.info("audit_consumer_started", topic=self.topic)

    async def stop(self) -> None:
        """Finish the batch in hand (write, then commit), stop the subscription; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await task
        finally:
            await self.subscription.stop()
            log.info("audit_consumer_stopped", written=self.written, duplicates=self.duplicates)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait(self) -> None:
        """Return when the loop ends (it only ends on stop, or by raising)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- the loop ------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                records = await self.subscription.poll(self.poll_timeout_s, self.max_records)
            except Exception:
                log.exception("audit_poll_failed")
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if not records:
                await asyncio.sleep(0)  # a transport that returns at once must not starve stop()
            elif not await self.handle(records):
                return  # stopping before the batch was stored: leave it uncommitted
            await self._maybe_prune()

    async def handle(self, records: list[Record]) -> bool:
        """Store one polled batch (retrying), then commit; False if stopped before storing."""
        ours = [r for r in records if r.topic == self.topic]
        if ours:
            result = await self._store_with_retry(ours)
            if result is None:
                return False
            self.written += result.written
            self.duplicates += result.duplicates
            self.metrics.records.inc(result.written)
            self.metrics.duplicates.inc(result.duplicates)
            if result.duplicates:
                log.info("audit_duplicates_skipped", count=result.duplicates)
            if result.malformed:
                log.warning("audit_malformed_records", count=result.malformed)
        try:
            await self.subscription.commit()
        except Exception:
            # The batch is stored; after a rebalance it is delivered again and skipped.
            log.warning("audit_commit_failed", exc_info=True)
        return True

    async def _store_with_retry(self, records: list[Record]) -> AppendResult | None:
        backoff = 0.1
        while True:
            started = time.perf_counter()
            try:
                result = await self.store.append(records)
            except Exception:
                log.exception("audit_store_write_failed", records=len(records))
                if self._stopping.is_set():
                    return None
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            return result

    async def _maybe_prune(self) -> None:
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + self.prune_interval_s
        try:
            deleted = await self.store.prune(now)
        except Exception:
            log.exception("audit_prune_failed")
            return
        if deleted:
            log.info("audit_pruned", records=deleted)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)


# ---------------------------------------------------------------- command


def main(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward consumer audit``: run until SIGTERM/SIGINT."""
    if not settings.kafka_bootstrap:
        raise ConfigError("RAGWARD_KAFKA_BOOTSTRAP must be set for `ragward consumer audit`")
    port = args.port if getattr(args, "port", None) is not None else settings.consumer_port
    group = getattr(args, "group", None) or DEFAULT_GROUP
    return asyncio.run(_serve(settings, port, group))


async def _serve(settings: Settings, port: int, group: str) -> int:
    from prometheus_client import start_http_server

    from telemetry.factory import make_bus

    registry = CollectorRegistry()
    store = open_store(settings)
    bus = make_bus(settings)
    consumer = AuditConsumer.from_bus(settings, bus, store, group=group, registry=registry)
    server = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if port:
            server, _thread = start_http_server(port, addr=settings.host, registry=registry)
            log.info("audit_metrics_listening", host=settings.host, port=port)
        await consumer.start()
        waiter = asyncio.create_task(stop.wait())
        runner = asyncio.create_task(consumer.wait())
        done, _ = await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if runner in done:
            runner.result()  # the loop only ends by raising: surface it
        else:
            runner.cancel()
        return 0
    finally:
        await consumer.stop()
        await store.close()
        closer = getattr(bus, "close", None) or getattr(bus, "stop", None)
        if closer is not None:
            outcome = closer()
            if asyncio.iscoroutine(outcome):
                await outcome
        if server is not None:
            server.shutdown()
            server.server_close()
