"""The event bus interface: one for producers and consumers, two transports.

Kafka (:mod:`telemetry.kafka_bus`, aiokafka) and in-process
(:mod:`telemetry.memory_bus`) implement it; producers and consumers are written
once against these protocols and tested on both.

Semantics every transport keeps:

* ``Publisher.publish`` returns only once the record is durable — acknowledged
  by the broker with ``acks=all``, or (Kafka unreachable) appended and fsynced
  to the local spool that drains in order later. It raises
  :class:`~ragward.errors.DependencyUnavailable` when neither is possible.
* Records with the same key (the tenant) keep their order: same partition.
* A ``Subscription`` belongs to a consumer group. ``poll`` returns records in
  partition order; ``commit`` stores, for every partition, the offset after the
  last record ``poll`` returned, so a consumer commits only after it has durably
  handled a batch (at-least-once; consumers dedupe by ``event_id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


class Publisher(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, key: str, value: bytes) -> str | None:
        """Return once the record is durable (see module docstring); transports may say
        how ("kafka", "spool", "memory", ...) for metrics, or return None."""
        ...


class Subscription(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def poll(self, timeout_s: float = 1.0, max_records: int = 1000) -> list[Record]: ...

    async def commit(self) -> None:
        """Commit the position after every record returned by ``poll`` so far."""
        ...

    async def lag(self) -> int:
        """Records in the assigned partitions not yet returned by ``poll``."""
        ...


class EventBus(Protocol):
    def publisher(self) -> Publisher: ...

    def subscribe(
        self, topics: Sequence[str], group_id: str, *, from_beginning: bool = True
    ) -> Subscription: ...
