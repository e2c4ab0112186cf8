"""The audit consumer: the audit topic into the hash-chained store, nothing lost or doubled.

``ragward consumer audit [--port P] [--group G]`` runs it alone on Kafka (group
``ragward-audit`` by default); ``ragward serve`` embeds :class:`AuditConsumer`
on whichever bus it runs.

HTTP (its own app, :func:`create_audit_app`, on ``--port`` or
``RAGWARD_CONSUMER_PORT``; port 0 runs the consumer without HTTP):

* ``GET /metrics`` — Prometheus text (``ragward_audit_*``)
* ``GET /health`` — 200 while the process answers
* ``GET /ready`` — 200 with the group while the subscription is started, the loop
  runs and neither the last poll nor the last store write failed; else 503 and
  why (not started yet, Kafka or the store failing, the loop died). A loop that
  dies also ends the process (exit status 1).

The loop: poll a batch → verify every event's signature (:mod:`telemetry.signing`):
an unsigned, unknown-key, bad-signature or expired-key event goes to the
dead-letter topic with its reason (:mod:`telemetry.dead_letter`), is counted in
``ragward_events_rejected_total{topic,reason}`` and never reaches the store (so
never ``/v1/audit``) → write the rest in ONE store transaction (the store skips
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
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import structlog
from litestar import Litestar
from prometheus_client import CollectorRegistry, Counter, Histogram

from ragward import tracing
from ragward.errors import ConfigError
from ragward.http_errors import EXCEPTION_HANDLERS
from ragward.settings import Settings
from telemetry.audit_store import AppendResult, AuditStore, open_store
from telemetry.bus import EventBus, Publisher, Record, Subscription
from telemetry.consumer import ConsumerConfig, ConsumerMetrics, start_with_retry
from telemetry.consumer_http import Lifespan, consumer_routes
from telemetry.dead_letter import envelope, park
from telemetry.events import trace_fields
from telemetry.signing import EventVerifier, Rejection

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
    ``group`` only names the subscription's consumer group (for ``/ready``).
    """

    def __init__(
        self,
        store: AuditStore,
        subscription: Subscription,
        *,
        topic: str,
        verifier: EventVerifier,
        dead_letters: Publisher,
        dead_letter_topic: str,
        group: str = DEFAULT_GROUP,
        registry: CollectorRegistry | None = None,
        prune_interval_s: float = 3600.0,
        poll_timeout_s: float = 0.5,
        max_records: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.subscription = subscription
        self.topic = topic
        self.group = group
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = AuditMetrics(self.registry)
        self.events = ConsumerMetrics.for_registry(self.registry)
        self.verifier = verifier
        self.dead_letters = dead_letters
        self.dead_letter_topic = dead_letter_topic
        self.rejected = 0
        self.prune_interval_s = prune_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.max_records = max_records
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._next_prune = 0.0
        self.written = 0
        self.duplicates = 0
        self.last_error: str | None = None  # repr of the last error caught, kept
        self._failing: str | None = None  # what fails now (start, poll, store write)

    @classmethod
    def from_bus(
        cls,
        config: ConsumerConfig,
        bus: EventBus,
        store: AuditStore,
        *,
        group: str = DEFAULT_GROUP,
        **kwargs: Any,
    ) -> AuditConsumer:
        """Subscribed to the one topic ``config`` names (the audit topic), its refused
        events parked on the bus's dead-letter topic."""
        (topic,) = config.topics
        subscription = bus.subscribe([topic], group, from_beginning=True)
        return cls(store, subscription, topic=topic, group=group, verifier=config.verifier,
                   dead_letters=bus.publisher(), dead_letter_topic=config.dead_letter_topic,
                   **kwargs)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping.clear()
        await self.subscription.start()
        try:
            await self.dead_letters.start()
        except BaseException:
            await self.subscription.stop()
            raise
        self._failing = None
        self._task = asyncio.create_task(self._run(), name="audit-consumer")
        log.info("audit_consumer_started", topic=self.topic, group=self.group)

    async def start_with_retry(self, backoff_max_s: float = 10.0) -> None:
        """Start, retrying with back-off while the broker is unreachable (``/ready`` says why)."""
        await start_with_retry(self.start, failed=lambda exc: self._failed("start", exc),
                               event="audit_consumer_start_failed", backoff_max_s=backoff_max_s)

    async def stop(self) -> None:
        """Finish the batch in hand (write, then commit), stop the subscription; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await task
        finally:
            self._failing = None
            try:
                await self.subscription.stop()
            finally:
                await self.dead_letters.stop()
            log.info("audit_consumer_stopped", written=self.written, duplicates=self.duplicates)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """None while the subscription is started, the loop runs and neither the last poll
        nor the last store write failed; else why not (``/ready``'s 503 reason)."""
        task = self._task
        if task is None:
            return self._failing or "consumer not running"
        if task.done():
            if task.cancelled():
                return "consumer loop cancelled"
            error = task.exception()
            return f"consumer loop died: {error!r}" if error else "consumer loop ended"
        return self._failing

    def _failed(self, what: str, exc: BaseException) -> None:
        self.last_error = repr(exc)
        self._failing = f"{what} failing: {exc!r}"

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
            except Exception as exc:
                log.exception("audit_poll_failed")
                self._failed("poll", exc)
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self._failing = None
            if not records:
                await asyncio.sleep(0)  # a transport that returns at once must not starve stop()
            elif not await self.handle(records):
                return  # stopping before the batch was stored: leave it uncommitted
            await self._maybe_prune()

    async def handle(self, records: list[Record]) -> bool:
        """Store one polled batch (retrying), then commit; False if stopped before storing."""
        ours = []
        for record in records:
            if record.topic != self.topic:
                continue
            rejection = await self.verifier.verify(record.value)
            if rejection is None:
                ours.append(record)
            elif not await self._reject(record, rejection):
                return False
        if ours:
            with tracing.consumer_span(self.group, (trace_fields(r.value) for r in ours),
                                       len(ours)):
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
        except Exception as exc:
            # The batch is stored; after a rebalance it is delivered again and skipped.
            self.last_error = repr(exc)
            log.warning("audit_commit_failed", exc_info=True)
        return True

    async def _reject(self, record: Record, rejection: Rejection) -> bool:
        """Dead-letter a record that failed verification; False if stopped first."""
        log.error("audit_event_rejected", partition=record.partition, offset=record.offset,
                  reason=rejection.reason, detail=rejection.detail)
        letter = envelope(record, rejection.reason, rejection.detail, self.group,
                          rejection.key_id)

        async def wait(seconds: float) -> bool:
            await self._pause(seconds)
            return self._stopping.is_set()

        try:
            await park(self.dead_letters, self.dead_letter_topic, record, letter, retry_wait=wait)
        except Exception as exc:
            self._failed("dead-letter publish", exc)
            return False
        self.rejected += 1
        self.events.rejected.labels(record.topic, rejection.reason).inc()
        self.events.dead_lettered.labels(record.topic).inc()
        return True

    async def _store_with_retry(self, records: list[Record]) -> AppendResult | None:
        backoff = 0.1
        while True:
            started = time.perf_counter()
            try:
                result = await self.store.append(records)
            except Exception as exc:
                log.exception("audit_store_write_failed", records=len(records))
                self._failed("store write", exc)
                if self._stopping.is_set():
                    return None
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.metrics.commit_seconds.observe(time.perf_counter() - started)
            self._failing = None
            return result

    async def _maybe_prune(self) -> None:
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + self.prune_interval_s
        try:
            deleted = await self.store.prune(now)
        except Exception as exc:
            self.last_error = repr(exc)
            log.exception("audit_prune_failed")
            return
        if deleted:
            log.info("audit_pruned", records=deleted)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)


# -------------------------------------------------------------------- HTTP


def create_audit_app(
    consumer: AuditConsumer,
    *,
    bus: EventBus | None = None,
    close_store: bool = True,
    on_loop_exit: Callable[[Exception], None] | None = None,
    protect_metrics: bool = False,
    lifespans: Sequence[Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]] = (),
) -> Litestar:
    """The audit consumer's own app: ``/metrics`` (the consumer's registry), ``/health``,
    ``/ready`` (see :meth:`AuditConsumer.not_ready_reason`).

    Its lifespan starts the consumer in the background (retrying while Kafka is
    unreachable, so ``/ready`` can say why) and on shutdown stops it — the batch in hand
    is written and committed first — then closes the store (unless ``close_store`` is
    False) and ``bus`` (if it has ``close``/``stop``). If the loop dies, the error is
    logged and passed to ``on_loop_exit`` (``ragward consumer audit`` ends the server).
    ``protect_metrics`` guards ``/metrics`` (``RAGWARD_METRICS_AUTH=token``); ``lifespans``
    run first (the metrics access).
    """

    async def supervise() -> None:
        await consumer.start_with_retry()
        try:
            await consumer.wait()
        except Exception as exc:
            log.error("audit_consumer_loop_died", error=repr(exc))
            if on_loop_exit is not None:
                on_loop_exit(exc)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        supervisor = asyncio.create_task(supervise(), name="audit-consumer-supervisor")
        try:
            yield
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
            try:
                await consumer.stop()
            except Exception:  # the loop had died: reported by supervise() already
                log.warning("audit_consumer_stopped_after_error", exc_info=True)
            finally:
                await _close(consumer.store if close_store else None, bus)

    return Litestar(
        route_handlers=consumer_routes(
            consumer.registry, group=consumer.group, not_ready=consumer.not_ready_reason,
            protect_metrics=protect_metrics,
        ),
        lifespan=[*lifespans, lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=None,
        debug=False,
    )


async def _close(store: AuditStore | None, bus: object | None) -> None:
    """Close the store, then the bus if its transport has something to close."""
    if store is not None:
        await store.close()
    closer = getattr(bus, "close", None) or getattr(bus, "stop", None)
    if closer is not None:
        outcome = closer()
        if asyncio.iscoroutine(outcome):
            await outcome


# ---------------------------------------------------------------- command


def main(settings: Settings, args: argparse.Namespace, *, access: Lifespan | None = None) -> int:
    """``ragward consumer audit``: run until SIGTERM/SIGINT; ``access`` guards its HTTP
    (the composition hands in the gateway's token check: ``ragward/consumers.py``).

    With a port (``--port`` or ``RAGWARD_CONSUMER_PORT``) it serves :func:`create_audit_app`
    with uvicorn; with port 0 it runs the consumer alone, without HTTP.
    """
    if not settings.kafka_bootstrap:
        raise ConfigError("RAGWARD_KAFKA_BOOTSTRAP must be set for `ragward consumer audit`")
    port = args.port if getattr(args, "port", None) is not None else settings.consumer_port
    group = getattr(args, "group", None) or DEFAULT_GROUP
    if port:
        return _serve_http(settings, port, group, access)
    return asyncio.run(_serve(settings, group))


def _serve_http(settings: Settings, port: int, group: str, access: Lifespan | None) -> int:
    import uvicorn

    from telemetry.configuration import audit_consumer_config, audit_store_config, make_bus

    store = open_store(audit_store_config(settings))
    bus = make_bus(settings)
    consumer = AuditConsumer.from_bus(audit_consumer_config(settings), bus, store, group=group)
    server: uvicorn.Server | None = None
    died: list[Exception] = []

    def loop_died(exc: Exception) -> None:
        died.append(exc)
        if server is not None:
            server.should_exit = True  # graceful: the lifespan stops and closes everything

    app = create_audit_app(
        consumer, bus=bus, on_loop_exit=loop_died,
        protect_metrics=settings.metrics_auth == "token",
        lifespans=[access] if access else [],
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=port, log_config=None, access_log=False)
    )
    log.info("audit_consumer_serving", host=settings.host, port=port, group=group)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()  # after SIGTERM/SIGINT uvicorn re-raises the signal once shut down
    if not server.started:
        return 3  # uvicorn's STARTUP_FAILURE (the port was taken, ...)
    return 1 if died else 0


async def _serve(settings: Settings, group: str) -> int:
    """Port 0: the consumer alone, until a signal or until its loop dies (raised)."""
    from telemetry.configuration import audit_consumer_config, audit_store_config, make_bus

    store = open_store(audit_store_config(settings))
    bus = make_bus(settings)
    consumer = AuditConsumer.from_bus(audit_consumer_config(settings), bus, store, group=group)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
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
        try:
            await consumer.stop()
        finally:
            await _close(store, bus)
