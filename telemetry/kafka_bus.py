"""The Kafka transport of the event bus (aiokafka).

Producer: idempotent, ``acks=all``, key = tenant (so a tenant's events stay in
order on one partition), compressed (``RAGWARD_KAFKA_COMPRESSION``: gzip by
default and always available; lz4, zstd and snappy need the ``cramjam``
package), batched (``RAGWARD_KAFKA_LINGER_MS``, 256 KiB batches). It sits under
a :class:`~telemetry.publisher.DurablePublisher`, so ``publish`` returns once
Kafka acknowledged the record or the local spool fsynced it. All publishers
of one bus share one producer and one spool (reference-counted start/stop):
a spool directory belongs to one process.

Subscriber: a consumer-group member with ``enable_auto_commit=False``;
``commit`` stores the positions after the records ``poll`` returned, and a
``ConsumerRebalanceListener`` commits them when partitions are revoked — but
only if the last polled batch was committed (handled), so a crash or stop in
the middle of a batch never commits records nobody handled. ``lag`` is the sum
over assigned partitions of highwater - position.

Topics are created with the admin client (``RAGWARD_KAFKA_PARTITIONS``,
default 3, ``RAGWARD_KAFKA_REPLICATION_FACTOR``) when missing.

Every client is built with the bus's :class:`~telemetry.kafka_security.KafkaSecurity`
(TLS, SASL) and started through :func:`~telemetry.kafka_security.start_client`: a
broker that refuses the credentials, certificate or ACLs stops the start with a
:class:`~telemetry.kafka_security.KafkaAccessRefused` instead of being retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka import codec as kafka_codec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidTimestampError,
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownProducerId,
)

from ragward.errors import ConfigError
from telemetry.bus import Record
from telemetry.kafka_security import KafkaSecurity, start_client
from telemetry.publisher import DurablePublisher
from telemetry.spool import Spool

log = structlog.get_logger(__name__)

_TOPIC_ALREADY_EXISTS = 36
# the broker will never take this record: retrying cannot help
_RECORD_REJECTED = (RecordTooLargeError, MessageSizeTooLargeError, RecordListTooLargeError,
                    CorruptRecordException, InvalidTopicError, InvalidTimestampError)
# the idempotent producer's state is off (e.g. after a broker restart): recreate it
_PRODUCER_STATE = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                   ProducerFenced)
_CODECS = {
    "gzip": kafka_codec.has_gzip,
    "lz4": kafka_codec.has_lz4,
    "zstd": kafka_codec.has_zstd,
    "snappy": kafka_codec.has_snappy,
}


def compression_type(setting: str) -> str | None:
    """aiokafka's compression_type for RAGWARD_KAFKA_COMPRESSION, checked up front."""
    if setting == "none":
        return None
    available = _CODECS.get(setting)
    if available is None:
        raise ConfigError(f"RAGWARD_KAFKA_COMPRESSION: unknown codec {setting!r}")
    if not available():
        raise ConfigError(
            f"RAGWARD_KAFKA_COMPRESSION={setting} needs the 'cramjam' package "
            "(pip install cramjam); gzip needs nothing extra"
        )
    return setting


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], *, partitions: int, replication_factor: int,
    client_id: str = "ragward", security: KafkaSecurity | None = None,
) -> None:
    """Create the topics that do not exist yet (idempotent, races tolerated).

    A topic this client may not describe looks missing; creating it then fails with an
    authorisation error code, logged: on a secured cluster an administrator creates the
    topics (README: Security).
    """
    security = security or KafkaSecurity()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{client_id}-admin",
                                request_timeout_ms=10_000, **security.client_kwargs())
    try:
        await start_client(admin, security, bootstrap)
        existing = set(await admin.list_topics())
        missing = sorted(set(topics) - existing)
        if not missing:
            return
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor) for name in missing]
        )
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                log.warning("kafka.create_topic_failed", topic=topic, error_code=code)
            elif code == 0:
                log.info("kafka.topic_created", topic=topic, partitions=partitions)
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """One Kafka cluster as a bus: where it is, how its clients talk to it, the topics
    ragward creates there, and the spool that holds records while it is unreachable."""

    bootstrap: str
    security: KafkaSecurity
    client_id: str
    compression: str  # gzip, lz4, zstd, snappy or none (checked by the bus)
    linger_ms: int
    ack_timeout_s: float  # then the record goes to the spool
    topics: tuple[str, ...]  # created when missing, as below
    partitions: int
    replication_factor: int
    spool_dir: Path
    spool_max_bytes: int
    spool_full_policy: Literal["reject", "accept"]
    spool_drain_on_stop_s: float


class KafkaSender:
    """An idempotent aiokafka producer, restartable after a failed start."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._compression = compression_type(config.compression)
        self._producer: AIOKafkaProducer | None = None
        self._topics_ready = False

    async def start(self) -> None:
        if self._producer is not None:
            return
        c = self._config
        producer = AIOKafkaProducer(
            bootstrap_servers=c.bootstrap,
            client_id=c.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=self._compression,
            linger_ms=c.linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(5_000, int(c.ack_timeout_s * 4000)),
            retry_backoff_ms=100,
            **c.security.client_kwargs(),
        )
        try:
            await start_client(producer, c.security, c.bootstrap)
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        if not self._topics_ready and c.topics:
            try:
                await ensure_topics(
                    c.bootstrap, c.topics, partitions=c.partitions,
                    replication_factor=c.replication_factor, client_id=c.client_id,
                    security=c.security,
                )
                self._topics_ready = True
            except Exception as exc:  # auto-creation may still work; sends will tell
                log.warning("kafka.ensure_topics_failed", error=repr(exc))

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[Any]:
        if self._producer is None:
            raise ProducerClosed()
        future: asyncio.Future[Any] = await self._producer.send(topic, value=value, key=key)
        return future

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Flush for up to ``timeout_s``; then fail what is left (it is spooled) and close."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        stopping = asyncio.ensure_future(producer.stop())
        done, _ = await asyncio.wait({stopping}, timeout=timeout_s)
        if not done:
            log.warning("kafka.producer_stop_forced")
            producer._message_accumulator.fail_all(KafkaTimeoutError("producer stopped"))
        await stopping

    def rejects_record(self, exc: BaseException) -> bool:
        return isinstance(exc, _RECORD_REJECTED)

    def needs_reset(self, exc: BaseException) -> bool:
        return isinstance(exc, _PRODUCER_STATE)


class _Lease:
    """One user's handle on the bus's shared DurablePublisher (reference-counted)."""

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus
        self._started = False
        self._held: DurablePublisher | None = None  # kept after stop for its counters

    @property
    def durable(self) -> DurablePublisher:
        return self._held if self._held is not None else self._bus._durable()

    async def start(self) -> None:
        if not self._started:
            self._held = await self._bus._acquire()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._bus._release()

    async def publish(self, topic: str, key: str, value: bytes) -> str:
        return await self.durable.publish(topic, key, value)

    async def publish_nowait(self, topic: str, key: str, value: bytes) -> bool:
        return await self.durable.publish_nowait(topic, key, value)

    @property
    def spool_bytes(self) -> int:
        return self.durable.spool_bytes

    @property
    def spool_capacity_bytes(self) -> int:
        return self.durable.spool_capacity_bytes

    @property
    def published(self) -> dict[tuple[str, str], int]:
        return self.durable.published

    @property
    def spool_full(self) -> dict[str, int]:
        return self.durable.spool_full

    async def wait_drained(self, timeout_s: float) -> bool:
        return await self.durable.wait_drained(timeout_s)


class KafkaBus:
    """An :class:`~telemetry.bus.EventBus` on Kafka."""

    def __init__(self, config: KafkaConfig, *, session_timeout_ms: int = 10_000) -> None:
        compression_type(config.compression)  # fail at start-up, not at first send
        self.config = config
        self.session_timeout_ms = session_timeout_ms
        self._publisher: DurablePublisher | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    def publisher(self) -> _Lease:
        return _Lease(self)

    def subscribe(
        self, topics: Sequence[str], group_id: str, *, from_beginning: bool = True
    ) -> KafkaSubscription:
        return KafkaSubscription(self, list(topics), group_id, from_beginning=from_beginning,
                                 session_timeout_ms=self.session_timeout_ms)

    def _durable(self) -> DurablePublisher:
        if self._publisher is None:
            c = self.config
            self._publisher = DurablePublisher(
                KafkaSender(c),
                Spool(c.spool_dir, c.spool_max_bytes),
                ack_timeout_s=c.ack_timeout_s,
                full_policy=c.spool_full_policy,
                drain_on_stop_s=c.spool_drain_on_stop_s,
            )
        return self._publisher

    async def _acquire(self) -> DurablePublisher:
        async with self._lock:
            durable = self._durable()
            if self._users == 0:
                await durable.start()
            self._users += 1
            return durable

    async def _release(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0 and self._publisher is not None:
                await self._publisher.stop()
                self._publisher = None


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._subscription._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("kafka.partitions_assigned", group=self._subscription.group_id,
                 partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


class KafkaSubscription:
    """One member of a Kafka consumer group, committing only what was handled."""

    def __init__(
        self, bus: KafkaBus, topics: list[str], group_id: str, *, from_beginning: bool,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._bus = bus
        self.topics = topics
        self.group_id = group_id
        self._from_beginning = from_beginning
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._outstanding = False

    @property
    def assignment(self) -> set[tuple[str, int]]:
        if self._consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def start(self) -> None:
        if self._consumer is not None:
            return
        c = self._bus.config
        security = c.security
        await ensure_topics(c.bootstrap, self.topics, partitions=c.partitions,
                            replication_factor=c.replication_factor,
                            client_id=c.client_id, security=security)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=c.bootstrap,
            client_id=c.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self._from_beginning else "latest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(300, min(1000, self._session_timeout_ms // 3)),
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **security.client_kwargs(),
        )
        consumer.subscribe(self.topics, listener=_CommitOnRevoke(self))
        try:
            await start_client(consumer, security, c.bootstrap)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        self._positions.clear()

    async def poll(self, timeout_s: float = 1.0, max_records: int = 1000) -> list[Record]:
        if self._consumer is None:
            raise RuntimeError("subscription is not started")
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        records: list[Record] = []
        for tp, messages in batches.items():
            if not messages:
                continue
            records.extend(
                Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
                for m in messages
            )
            self._positions[tp] = messages[-1].offset + 1
        if records:
            self._outstanding = True
        return records

    async def commit(self) -> None:
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        offsets = {tp: pos for tp, pos in self._positions.items() if tp in assigned}
        if offsets:
            await self._consumer.commit(offsets)
        self._outstanding = False

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        offsets = {tp: self._positions[tp] for tp in revoked if tp in self._positions}
        if offsets and not self._outstanding and self._consumer is not None:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:  # the new owner re-reads; dedupe drops the repeats
                log.warning("kafka.commit_on_revoke_failed", error=repr(exc))
        for tp in revoked:
            self._positions.pop(tp, None)

    async def lag(self) -> int:
        consumer = self._consumer
        if consumer is None:
            return 0
        assigned = list(consumer.assignment())
        if not assigned:
            return 0
        total = 0
        unknown: list[TopicPartition] = []
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is None:
                unknown.append(tp)
                continue
            position = self._positions.get(tp)
            if position is None:
                with contextlib.suppress(Exception):
                    position = await consumer.position(tp)
            total += max(0, high - (position or 0))
        if unknown:
            with contextlib.suppress(Exception):
                ends = await consumer.end_offsets(unknown)
                for tp in unknown:
                    position = self._positions.get(tp)
                    if position is None:
                        position = await consumer.position(tp)
                    total += max(0, ends[tp] - position)
        return total
