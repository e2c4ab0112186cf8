"""Durable publishing: acknowledged by Kafka, or fsynced to the local spool.

:class:`DurablePublisher` wraps a transport :class:`Sender` (Kafka's, in
:mod:`telemetry.kafka_bus`) and a :class:`~telemetry.spool.Spool`:

``live`` mode
    ``publish`` hands the record to the producer and waits for the broker's ack
    (``acks=all``) for at most ``ack_timeout_s``. If the ack comes, done. If it
    times out or the send fails with a retriable error, the publisher switches
    to ``spooling`` and appends the record to the spool instead.
``spooling`` mode
    Every ``publish`` appends to the spool (group commit: one fsync for all the
    appends that arrive together) and returns once fsynced. A drain task reads
    the spool in append order, sends each batch and waits for all its acks,
    then advances the spool's cursor; on failure it retries the same batch
    with exponential backoff (0.1 s doubling to 5 s, with jitter). When the
    spool is empty the publisher goes back to ``live``. Under steady load the spool
    would never be empty at the instant the drain looks (new records arrive while
    each batch waits for its acks), so once a batch has reached the end of the
    spool the drain *closes the tail*: new publishes wait (at most ``ack_timeout_s``;
    the first to time out reopens it) while it sends the last records, then go live.
    Spooling thus lasts about as long as the outage, not as long as the load.

**Ordering guarantee.** The drain sends in append order through one
idempotent producer, and once spooling starts every later publish goes to the
spool until it is empty, so for publishes that do not overlap in time, records
with the same key (tenant) reach Kafka in publish order — spooled records
before newer live ones. Publishes that overlap in time have no defined order
(as with any concurrent producer). A record whose live send timed out is
spooled but may *also* still be delivered by the producer later: a duplicate,
possibly out of order, that consumers drop by ``event_id``.

**Spool full.** ``full_policy="reject"`` (the default) raises
:class:`~ragward.errors.DependencyUnavailable` (the gateway answers 503 and
sends no 2xx without a durable audit record); ``"accept"`` sends the record
best effort (no durability) and counts it in ``spool_full["accepted"]``.

Errors are sorted by the sender: a record the broker can never accept (too
large, corrupt, invalid topic) raises DependencyUnavailable on the live path;
met while draining it is logged, counted in ``undeliverable`` and skipped so it
cannot block the records behind it. Every other error — connection, timeout,
leadership, authorisation, and the idempotent producer's own state errors
(out-of-order sequence, unknown producer id: seen after a broker restart) — is
retried, the latter with a fresh producer; a spooled record is never dropped
for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections.abc import Iterable
from typing import Any, Literal, Protocol

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ragward.errors import ConfigError, DependencyUnavailable
from telemetry.spool import Spool, SpooledRecord, SpoolFull

log = structlog.get_logger(__name__)


class Sender(Protocol):
    """The transport under a DurablePublisher (Kafka's producer)."""

    async def start(self) -> None:
        """Connect; raise when the broker cannot be reached, and
        :class:`~ragward.errors.ConfigError` when it refuses this client (credentials,
        certificate): the publisher's start then fails instead of spooling forever."""
        ...

    async def stop(self) -> None: ...

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        """Queue the record; the returned future resolves on the broker's ack."""
        ...

    def rejects_record(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the broker will never accept this record (too large,
        corrupt, invalid topic) — retrying cannot help. Anything else is retried."""
        ...

    def needs_reset(self, exc: BaseException) -> bool:
        """Whether the producer must be recreated to get past ``exc`` (its idempotence
        state went wrong: out-of-order sequence, unknown producer id, fenced epoch)."""
        ...


class Mode(enum.Enum):
    LIVE = "live"
    SPOOLING = "spooling"


class DurablePublisher:
    """A :class:`~telemetry.bus.Publisher` that never acknowledges a lost record."""

    def __init__(
        self,
        sender: Sender,
        spool: Spool,
        *,
        ack_timeout_s: float = 2.0,
        full_policy: Literal["reject", "accept"] = "reject",
        connect_timeout_s: float = 5.0,
        drain_batch: int = 2000,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        drain_on_stop_s: float = 0.0,
    ) -> None:
        self._sender = sender
        self._drain_on_stop = drain_on_stop_s
        self._spool = spool
        self._ack_timeout = ack_timeout_s
        self._full_policy = full_policy
        self._connect_timeout = connect_timeout_s
        self._drain_batch = drain_batch
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._mode = Mode.LIVE
        self._connected = False
        self._started = False
        self._stopping = False
        self._spooling = asyncio.Event()
        self._drained = asyncio.Event()
        self._tail_closed: asyncio.Event | None = None  # set: publishes may go on
        self._drain_task: asyncio.Task[None] | None = None
        self._lingering: set[asyncio.Future[Any]] = set()
        self._failures = 0
        self._reset = False  # the producer must be recreated before the next drain
        # counters (read by register_publisher_metrics and StatusEvent)
        self.published: dict[tuple[str, str], int] = {}
        self.spool_full = {"rejected": 0, "accepted": 0}
        self.drained = 0
        self.undeliverable = 0

    # -- state ------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def spool_bytes(self) -> int:
        return self._spool.bytes_used

    @property
    def spool_capacity_bytes(self) -> int:
        return self._spool.max_bytes

    @property
    def spool(self) -> Spool:
        return self._spool

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._stopping = False
        await self._spool.start()
        if not self._spool.is_empty:
            self._mode = Mode.SPOOLING
        if not await self._connect(refusal_stops=True):
            self._mode = Mode.SPOOLING
        if self._mode is Mode.SPOOLING:
            self._spooling.set()
        else:
            self._drained.set()
        self._drain_task = asyncio.create_task(self._drain_loop(), name="spool-drain")
        self._started = True

    async def stop(self) -> None:
        """Stop draining, fail nothing that was acknowledged, close the producer and spool.

        With ``drain_on_stop_s``, first give the drain that long to empty the spool (a
        container's SIGTERM grace period): records it could not send stay in the spool,
        durable, and the next start drains them."""
        if not self._started:
            return
        if self._drain_on_stop > 0 and not self._spool.is_empty:
            # Said first: the process may now take up to drain_on_stop_s to exit.
            log.info("publisher.stop_draining", spool_bytes=self._spool.bytes_used,
                     timeout_s=self._drain_on_stop)
            drained = await self.wait_drained(self._drain_on_stop)
            log.info("publisher.stop_drain", drained=drained,
                     spool_bytes_left=self._spool.bytes_used)
        self._started = False
        self._stopping = True
        self._open_tail()
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
            self._drain_task = None
        try:
            await self._sender.stop()
        finally:
            self._connected = False
            for task in list(self._lingering):
                task.cancel()
            if self._lingering:
                await asyncio.gather(*self._lingering, return_exceptions=True)
            await self._spool.stop()

    async def wait_drained(self, timeout_s: float) -> bool:
        """Wait until the publisher is live again with an empty spool (tests, bench)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._mode is Mode.LIVE and self._spool.is_empty:
                return True
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.2, timeout_s)):
                    await self._drained.wait()
        return self._mode is Mode.LIVE and self._spool.is_empty

    # -- publishing -------------------------------------------------------------
    async def publish(self, topic: str, key: str, value: bytes) -> str:
        """Return once durable; the path it took: ``"kafka"`` (acked), ``"spool"``
        (fsynced) or ``"best_effort"`` (spool full, policy accept: not durable)."""
        if not self._started:
            raise DependencyUnavailable("event publisher is not running")
        tail = self._tail_closed
        if tail is not None:  # the drain sends the spool's last records: wait for them
            try:
                async with asyncio.timeout(self._ack_timeout):
                    await tail.wait()
            except TimeoutError:
                if self._tail_closed is tail:  # slower than an ack: hold no one else
                    self._open_tail()
        live = self._mode is Mode.LIVE and self._connected
        if live and await self._publish_live(topic, key, value):
            return "kafka"
        return await self._publish_spooled(topic, key, value)

    async def publish_nowait(self, topic: str, key: str, value: bytes) -> bool:
        """Fire and forget: queue the record in the producer and return without waiting for
        the ack — no durability (the spool-full "accept" policy; the benchmark's baseline).
        False when it could not even be queued."""
        if not self._connected:
            return False
        try:
            async with asyncio.timeout(self._ack_timeout):
                ack = await self._sender.send(topic, key.encode(), value)
        except Exception as exc:
            log.warning("publisher.best_effort_failed", topic=topic, error=repr(exc))
            return False
        self._linger(ack)
        return True

    async def _deliver(self, topic: str, key: bytes, value: bytes) -> None:
        ack = await self._sender.send(topic, key, value)
        await ack

    async def _publish_live(self, topic: str, key: str, value: bytes) -> bool:
        ack: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout(self._ack_timeout):
                ack = await self._sender.send(topic, key.encode(), value)
                await asyncio.shield(ack)  # a timeout must not cancel the producer's future
        except TimeoutError:
            if ack is not None:
                self._linger(ack)  # it may still be delivered: a duplicate consumers drop
            self._enter_spooling("ack_timeout")
            return False
        except asyncio.CancelledError:
            if ack is not None:
                self._linger(ack)
            raise
        except Exception as exc:
            if self._sender.rejects_record(exc):
                log.error("publisher.record_rejected", topic=topic, error=repr(exc))
                raise DependencyUnavailable("the event bus rejected the record") from exc
            if self._sender.needs_reset(exc):
                self._reset = True
            self._enter_spooling(type(exc).__name__)
            return False
        self._count(topic, "kafka")
        return True

    async def _publish_spooled(self, topic: str, key: str, value: bytes) -> str:
        try:
            await self._spool.append(topic, key, value)
        except SpoolFull:
            if self._full_policy == "reject":
                self.spool_full["rejected"] += 1
                raise DependencyUnavailable(
                    "the event spool is full and Kafka is unreachable"
                ) from None
            self.spool_full["accepted"] += 1
            await self.publish_nowait(topic, key, value)
            return "best_effort"
        except (OSError, RuntimeError) as exc:
            log.error("publisher.spool_failed", error=repr(exc))
            raise DependencyUnavailable("the event spool cannot be written") from exc
        self._count(topic, "spool")
        return "spool"

    def _count(self, topic: str, path: str) -> None:
        key = (topic, path)
        self.published[key] = self.published.get(key, 0) + 1

    def _linger(self, task: asyncio.Future[Any]) -> None:
        self._lingering.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._lingering.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a late failure of a spooled record is expected

    def _enter_spooling(self, reason: str) -> None:
        if self._mode is Mode.LIVE:
            self._mode = Mode.SPOOLING
            self._drained.clear()
            log.warning("publisher.spooling", reason=reason)
        self._spooling.set()

    # -- connecting and draining ------------------------------------------------
    async def _connect(self, *, refusal_stops: bool = False) -> bool:
        """Start the sender; False while the broker is unreachable. A refusal (ConfigError)
        stops ``start``; met later (a password rotated under a running gateway) it is
        logged as an error and retried like an outage, the records staying spooled."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._sender.start()
        except ConfigError as exc:
            with contextlib.suppress(Exception):
                await self._sender.stop()
            self._connected = False
            if refusal_stops:
                await self._spool.stop()
                raise
            log.error("publisher.kafka_refused", reason=str(exc))
            return False
        except Exception as exc:
            log.warning("publisher.kafka_unreachable", error=repr(exc))
            with contextlib.suppress(Exception):
                await self._sender.stop()
            self._connected = False
            return False
        self._connected = True
        return True

    async def _drain_loop(self) -> None:
        backoff = self._backoff_initial
        # stop() sets _stopping before cancelling: a cancellation that a finishing await
        # swallows (asyncio.wait_for in 3.11 can) must not keep this loop alive
        while not self._stopping:
            if self._mode is Mode.LIVE:
                self._spooling.clear()
                await self._spooling.wait()
                continue
            if self._reset:
                self._reset = False
                log.warning("publisher.producer_reset")
                with contextlib.suppress(Exception):
                    await self._sender.stop()
                self._connected = False
            if not self._connected and not await self._connect():
                self._open_tail()
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self._backoff_max)
                continue
            records, position = await self._spool.read_batch(self._drain_batch)
            if not records:
                if self._spool.is_empty:
                    self._mode = Mode.LIVE
                    self._drained.set()
                    self._open_tail()
                    log.info("publisher.spool_drained", drained=self.drained)
                else:
                    await self._spool.wait_for_data(0.5)
                continue
            if await self._send_batch(records):
                await self._spool.advance(position)
                self.drained += len(records)
                backoff = self._backoff_initial
                self._failures = 0
                if len(records) < self._drain_batch and self._tail_closed is None:
                    self._tail_closed = asyncio.Event()  # at the end: hold new publishes
            else:
                self._open_tail()  # the broker is not back after all: spool meanwhile
                self._failures += 1
                if self._failures % 3 == 0:  # a stuck producer: start afresh
                    self._reset = True
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self._backoff_max)

    def _open_tail(self) -> None:
        """Let publishes held by a closed tail go on (live if drained, else spooled)."""
        if self._tail_closed is not None:
            self._tail_closed.set()
            self._tail_closed = None

    async def _send_batch(self, records: list[SpooledRecord]) -> bool:
        """Send a batch and wait for every ack; False to retry the whole batch."""
        acks: list[asyncio.Future[Any]] = []
        deadline = max(self._ack_timeout * 2, 5.0)
        try:
            async with asyncio.timeout(deadline):
                for record in records:
                    acks.append(await self._sender.send(record.topic, record.key.encode(),
                                                        record.value))
        except Exception as exc:
            log.warning("publisher.drain_failed", error=repr(exc), records=len(records))
            for ack in acks:
                self._linger(ack)
            return False
        _, pending = await asyncio.wait(acks, timeout=deadline)
        for ack in pending:
            self._linger(ack)
        if pending:
            log.warning("publisher.drain_timeout", unacked=len(pending), records=len(records))
            return False
        retry: BaseException | None = None
        for record, ack in zip(records, acks, strict=True):
            failure = ack.exception()
            if failure is None:
                continue
            if self._sender.rejects_record(failure):  # never deliverable: do not block on it
                self.undeliverable += 1
                log.error("publisher.record_undeliverable", topic=record.topic,
                          error=repr(failure))
                continue
            retry = failure
            if self._sender.needs_reset(failure):
                self._reset = True
        if retry is not None:
            log.warning("publisher.drain_failed", records=len(records), error=repr(retry))
        return retry is None


class PublisherMetrics(Collector):
    """The gateway's publishing metrics, read from a publisher at scrape time:
    ragward_gateway_spool_bytes, ragward_gateway_spool_capacity_bytes,
    ragward_gateway_events_published_total{topic,path} and
    ragward_gateway_spool_full_total{outcome}."""

    def __init__(self, publisher: Any) -> None:
        self._publisher = publisher

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        p = self._publisher
        yield GaugeMetricFamily("ragward_gateway_spool_bytes", "Bytes waiting in the event spool.",
                                value=getattr(p, "spool_bytes", 0))
        yield GaugeMetricFamily("ragward_gateway_spool_capacity_bytes",
                                "Capacity of the event spool (RAGWARD_SPOOL_MAX_BYTES).",
                                value=getattr(p, "spool_capacity_bytes", 0))
        published = CounterMetricFamily(
            "ragward_gateway_events_published", "Events made durable, by topic and path.",
            labels=["topic", "path"],
        )
        for (topic, path), count in sorted(getattr(p, "published", {}).items()):
            published.add_metric([topic, path], count)
        yield published
        full = CounterMetricFamily(
            "ragward_gateway_spool_full", "Publishes that met a full spool, by outcome.",
            labels=["outcome"],
        )
        for outcome, count in sorted(getattr(p, "spool_full", {}).items()):
            full.add_metric([outcome], count)
        yield full


def register_publisher_metrics(publisher: Any, registry: CollectorRegistry) -> PublisherMetrics:
    """Expose a publisher's spool and publish counters on ``registry``."""
    collector = PublisherMetrics(publisher)
    registry.register(collector)
    return collector
