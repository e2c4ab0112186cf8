"""The one consumer loop every ragward consumer runs (metrics, alerts, audit).

::

    poll -> verify -> decode -> dead-letter what fails either -> drop repeats (event_id)
         -> handler(batch) -> commit -> poll ...

* **At least once, counted once.** The loop commits only after the handler
  returned for the whole batch; a crash before that means the batch is read
  again (by this consumer after a restart, or by the partition's next owner).
  Repeats are dropped by ``event_id`` over a bounded window (exactly the last
  ``dedupe_window`` ids: O(1), its memory taken whole at start, :class:`SeenIds`). An id
  is remembered only once its batch was handled, so a batch whose handler
  failed is handled again in full.
* **Handler failures** are retried on the same batch with backoff (0.1 s
  doubling to 10 s); nothing is committed until it succeeds.
* **Events that do not verify** (with a ``verifier``: unsigned, unknown key, bad
  signature, expired key; :mod:`telemetry.signing`) and **undecodable records**
  (not JSON, unknown ``type``, missing or wrong-typed fields) never reach the
  handler: each is published, with its reason and the original bytes
  (:mod:`telemetry.dead_letter`), same key, to the dead-letter topic — durably,
  before the batch commits — and counted; rejections also by reason, and
  ``rejected`` hears each one (the rolling view feeds the ForgedEvents alert).
* **Stopping** finishes the batch in hand, commits it, and closes the
  subscription and publisher in ``finally``.

Dedupe is per consumer instance: two instances of one group do not share their
windows, so a batch redelivered to another member after a rebalance in the
middle of handling is counted by both (Kafka's usual at-least-once window).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from ragward import tracing
from ragward.errors import ConfigError
from telemetry.bus import EventBus, Publisher, Record, Subscription
from telemetry.dead_letter import envelope, park
from telemetry.events import Event, any_decoder
from telemetry.signing import EventVerifier, Rejection


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """What one of ragward's consumers reads and how it treats what it reads: its topics,
    where events that fail their signature check go, how many event ids it remembers
    to drop redeliveries, and whether its ``/metrics`` and dashboard need a token."""

    topics: tuple[str, ...]
    dead_letter_topic: str
    verifier: EventVerifier
    dedupe_window: int
    protect_metrics: bool = False  # RAGWARD_METRICS_AUTH=token

log = structlog.get_logger(__name__)


async def start_with_retry(
    start: Callable[[], Awaitable[None]],
    *,
    failed: Callable[[Exception], None],
    event: str,
    backoff_max_s: float = 10.0,
) -> None:
    """Call ``start`` until it succeeds, backing off from 0.5 s to ``backoff_max_s``.

    For consumers whose HTTP side answers while Kafka is still unreachable:
    ``failed`` hears each error (``/ready`` gives it as the reason) and ``event``
    names the warning logged for it. A :class:`~ragward.errors.ConfigError` (the
    broker refused the credentials, certificate or ACLs) is not retried: ``failed``
    hears it and it is raised.
    """
    backoff = 0.5
    while True:
        try:
            await start()
            return
        except ConfigError as exc:
            failed(exc)
            log.error(event, error=str(exc))
            raise
        except Exception as exc:
            failed(exc)
            log.warning(event, error=repr(exc), retry_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, backoff_max_s)


class Delivery(NamedTuple):
    record: Record
    event: Event  # or what a custom decoder returns (the metrics consumer's lean types)


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


def _compact(event_id: str) -> int | str:
    """The form an id is remembered in: a 32-hex-digit id (what ``new_event_id`` mints) as
    its 128-bit integer — 44 bytes instead of the string's 81, which at the default
    window of 100,000 is a large part of a consumer's steady memory. Exact: only the one spelling
    that formats back to itself converts (``int`` would also take ``0x…``, capitals or
    ``_``), and an int never equals a str, so two different ids never meet."""
    if len(event_id) == 32:
        try:
            number = int(event_id, 16)
        except ValueError:
            return event_id
        if f"{number:032x}" == event_id:
            return number
    return event_id


# placeholders are -(2**127 + i): as large as a minted id (the same allocation size, so
# the memory a placeholder frees is what the id replacing it takes) and never one
_PLACEHOLDER = 1 << 127


class SeenIds:
    """Exactly the last ``window`` ids, first in first out, in memory taken whole at start.

    The window is filled with ``window`` placeholders when it is made (negative integers
    of a minted id's size, which :func:`_compact` never yields), and every id remembered
    pushes the oldest entry out: the set, the queue and the integers stay the same size
    from the first event on. So a consumer's memory is at its steady state before it
    reads anything — a memory limit too small for the window fails at start, not hours
    later — and ``len`` never exceeds ``window``. About 100 bytes an entry: 10 MB for the
    default 100,000 (up to twice that per entry for small windows, whose set is sparser).
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"dedupe window must be at least 1, not {window}")
        self.window = window
        self._order: deque[int | str] = deque(-_PLACEHOLDER - i for i in range(window))
        self._members: set[int | str] = set(self._order)
        self._remembered = 0  # real ids among the entries

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and _compact(event_id) in self._members

    def add(self, event_id: str) -> None:
        key = _compact(event_id)
        if key in self._members:
            return
        self._members.discard(self._order.popleft())
        self._order.append(key)
        self._members.add(key)
        self._remembered = min(self._remembered + 1, self.window)

    def __len__(self) -> int:
        """Ids remembered (placeholders not counted): at most ``window``."""
        return self._remembered


class ConsumerMetrics:
    """ragward_events_consumed_total{topic}, ragward_events_dead_lettered_total{topic},
    ragward_events_rejected_total{topic,reason}, ragward_events_duplicate_total and
    ragward_consumer_lag{group} — one set per registry, shared by every consumer loop
    that uses it (the audit consumer's too)."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, ConsumerMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter("ragward_events_consumed", "Events consumed, by topic.",
                                ["topic"], registry=registry)
        self.dead_lettered = Counter("ragward_events_dead_lettered",
                                     "Records sent to the dead-letter topic (undecodable or "
                                     "failing verification).", ["topic"], registry=registry)
        self.rejected = Counter("ragward_events_rejected",
                                "Events that failed signature verification, by reason.",
                                ["topic", "reason"], registry=registry)
        self.duplicates = Counter("ragward_events_duplicate",
                                  "Events dropped as repeats of an event_id already handled.",
                                  registry=registry)
        self.lag = Gauge("ragward_consumer_lag", "Records not yet consumed, by group.",
                         ["group"], registry=registry)

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        metrics = cls._by_registry.get(registry)
        if metrics is None:
            metrics = cls._by_registry[registry] = cls(registry)
        return metrics


class EventConsumer:
    """Runs :data:`BatchHandler` over a consumer group's events; see module docstring."""

    def __init__(
        self,
        bus: EventBus,
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        *,
        dead_letter_topic: str,
        dedupe_window: int = 100_000,
        registry: CollectorRegistry | None = None,
        from_beginning: bool = True,
        poll_timeout_s: float = 0.5,
        max_records: int = 5000,
        decoder: msgspec.json.Decoder[Any] = any_decoder,
        verifier: EventVerifier | None = None,
        rejected: Callable[[Rejection], None] | None = None,
    ) -> None:
        self.bus = bus
        self.topics = list(topics)
        self.group_id = group_id
        self.handler = handler
        self.dead_letter_topic = dead_letter_topic
        self.seen = SeenIds(dedupe_window)
        self.decoder = decoder  # anything whose result has .event_id; default: full events
        self.verifier = verifier  # None: trust every record (tests of the loop, the bench)
        self._rejected = rejected
        self.metrics = ConsumerMetrics.for_registry(registry) if registry is not None else None
        self._from_beginning = from_beginning
        self._poll_timeout = poll_timeout_s
        self._max_records = max_records
        self._subscription: Subscription | None = None
        self._publisher: Publisher | None = None
        self._task: asyncio.Task[None] | None = None
        self._poll: asyncio.Future[list[Record]] | None = None
        self._stopping = asyncio.Event()
        # plain counters, for tests and the snapshot
        self.consumed = 0
        self.handled = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self.rejected = 0
        self.lag: int | None = None
        self.ready = False
        self.last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        """Join the group and run the loop in a background task."""
        if self._task is not None:
            return
        self._stopping.clear()
        subscription = self.bus.subscribe(self.topics, self.group_id,
                                          from_beginning=self._from_beginning)
        publisher = self.bus.publisher()
        await subscription.start()
        try:
            await publisher.start()
        except BaseException:
            await subscription.stop()
            raise
        self._subscription, self._publisher = subscription, publisher
        self.ready = True
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish and commit the batch in hand, then leave the group."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        if self._poll is not None:
            self._poll.cancel()  # between batches: no need to wait for the poll timeout
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and task.exception() is not None:
            log.warning("consumer.ended_with_error", group=self.group_id,
                        error=repr(task.exception()))

    async def wait(self) -> None:
        """Until the loop ends (stop() or a fatal error)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the loop ---------------------------------------------------------------
    async def _run(self) -> None:
        subscription, publisher = self._subscription, self._publisher
        assert subscription is not None and publisher is not None
        backoff = 0.1
        try:
            while not self._stopping.is_set():
                poll = self._poll = asyncio.ensure_future(
                    subscription.poll(self._poll_timeout, self._max_records)
                )
                try:
                    records = await poll
                except asyncio.CancelledError:
                    if poll.cancelled() and self._stopping.is_set():
                        break  # stop() interrupted a wait for records
                    raise
                except Exception as exc:
                    self._failed("consumer.poll_failed", exc)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                finally:
                    self._poll = None
                try:
                    self.lag = await subscription.lag()
                    if self.metrics is not None:
                        self.metrics.lag.labels(self.group_id).set(self.lag)
                except Exception as exc:
                    self._failed("consumer.lag_failed", exc)
                if not records:
                    continue
                batch = await self._decode(records, publisher)
                while not await self._handle(batch):
                    if self._stopping.is_set():
                        return  # not committed: the batch is read again later
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                try:
                    await subscription.commit()
                except Exception as exc:  # rebalanced meanwhile: the new owner re-reads
                    self._failed("consumer.commit_failed", exc)
                backoff = 0.1
        finally:
            self.ready = False
            try:
                await subscription.stop()
            finally:
                await publisher.stop()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def _failed(self, event: str, exc: BaseException) -> None:
        self.last_error = repr(exc)
        log.warning(event, group=self.group_id, error=repr(exc))

    async def _decode(self, records: list[Record], publisher: Publisher) -> list[Delivery]:
        batch: list[Delivery] = []
        in_batch: set[str] = set()
        seen = self.seen
        decode = self.decoder.decode
        verify = self.verifier.verify if self.verifier is not None else None
        consumed: dict[str, int] = {}
        for record in records:
            consumed[record.topic] = consumed.get(record.topic, 0) + 1
            if verify is not None and (rejection := await verify(record.value)) is not None:
                await self._reject(record, publisher, rejection)
                continue
            try:
                event = decode(record.value)
            except msgspec.DecodeError as exc:
                log.warning("consumer.undecodable", topic=record.topic,
                            partition=record.partition, offset=record.offset,
                            error=str(exc)[:200])
                await self._dead_letter(record, publisher, "undecodable", str(exc)[:200])
                continue
            event_id = event.event_id
            if event_id in seen or event_id in in_batch:
                self.duplicates += 1
                if self.metrics is not None:
                    self.metrics.duplicates.inc()
                continue
            in_batch.add(event_id)
            batch.append(Delivery(record, event))
        self.consumed += len(records)
        if self.metrics is not None:
            for topic, count in consumed.items():
                self.metrics.consumed.labels(topic).inc(count)
        return batch

    async def _reject(self, record: Record, publisher: Publisher, rejection: Rejection) -> None:
        log.error("consumer.event_rejected", topic=record.topic, partition=record.partition,
                  offset=record.offset, reason=rejection.reason, detail=rejection.detail,
                  group=self.group_id)
        await self._dead_letter(record, publisher, rejection.reason, rejection.detail,
                                rejection.key_id)
        self.rejected += 1
        if self.metrics is not None:
            self.metrics.rejected.labels(record.topic, rejection.reason).inc()
        if self._rejected is not None:
            self._rejected(rejection)

    async def _dead_letter(self, record: Record, publisher: Publisher, reason: str,
                           detail: str, key_id: str | None = None) -> None:
        letter = envelope(record, reason, detail, self.group_id, key_id)

        async def wait(seconds: float) -> bool:
            await self._sleep(seconds)
            return self._stopping.is_set()

        await park(publisher, self.dead_letter_topic, record, letter, retry_wait=wait)
        self.dead_lettered += 1
        if self.metrics is not None:
            self.metrics.dead_lettered.labels(record.topic).inc()

    async def _handle(self, batch: list[Delivery]) -> bool:
        if batch:
            try:
                with tracing.consumer_span(self.group_id, (d.event for d in batch),
                                           len(batch)):
                    await self.handler(batch)
            except Exception as exc:
                log.exception("consumer.handler_failed", group=self.group_id, events=len(batch))
                self.last_error = repr(exc)
                return False
            for delivery in batch:
                self.seen.add(delivery.event.event_id)
            self.handled += len(batch)
        return True
