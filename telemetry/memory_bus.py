"""The in-process event bus: Kafka's semantics without Kafka, for ``ragward serve``.

What it keeps from Kafka, so consumers behave the same on both transports:

* topics split into partitions (``partitions`` each, created on first use); a
  record goes to ``crc32(key) % partitions``, so one key (tenant) keeps its order;
* per-partition offsets; ``poll`` returns records in partition order;
* consumer groups: the partitions of the subscribed topics are split
  round-robin between the group's live members, re-split whenever one joins
  or leaves; each group has committed offsets, and a partition handed to a new
  member starts at the group's committed offset (redelivery after a crash);
* lag = records in the assigned partitions not yet returned by ``poll``.

What it cannot keep: durability across a process crash. Records live in
memory; each partition drops records every group has committed past (keeping
the newest ``keep_min``) and holds at most ``retention_records``. ``publish``
returns at once.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from telemetry.bus import Record

log = structlog.get_logger(__name__)

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    base: int = 0  # offset of records[0]
    records: list[Record] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + len(self.records)


@dataclass
class _Group:
    members: list[MemorySubscription] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)


class MemoryBus:
    """An :class:`~telemetry.bus.EventBus` held in this process's memory."""

    def __init__(
        self, partitions: int = 3, *, retention_records: int = 200_000, keep_min: int = 20_000
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.retention_records = retention_records
        self.keep_min = min(keep_min, retention_records)
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin = 0
        self._appends = 0

    # -- EventBus ---------------------------------------------------------------
    def publisher(self) -> MemoryPublisher:
        return MemoryPublisher(self)

    def subscribe(
        self, topics: Sequence[str], group_id: str, *, from_beginning: bool = True
    ) -> MemorySubscription:
        return MemorySubscription(self, list(topics), group_id, from_beginning=from_beginning)

    # -- inspection (tests, status) ---------------------------------------------
    def end_offsets(self, topic: str) -> list[int]:
        return [p.end for p in self._topic(topic)]

    def committed(self, group_id: str) -> dict[TopicPartition, int]:
        group = self._groups.get(group_id)
        return dict(group.committed) if group else {}

    def records(self, topic: str) -> list[Record]:
        """Every retained record of a topic, partition by partition."""
        return [r for p in self._topic(topic) for r in p.records]

    # -- internals --------------------------------------------------------------
    def _topic(self, topic: str) -> list[_Partition]:
        parts = self._topics.get(topic)
        if parts is None:
            parts = self._topics[topic] = [_Partition() for _ in range(self.partitions)]
            for group in self._groups.values():
                if any(topic in m.topics for m in group.members):
                    self._rebalance(group)
        return parts

    def _partition_for(self, key: bytes | None) -> int:
        if key is None:
            self._round_robin += 1
            return self._round_robin % self.partitions
        return zlib.crc32(key) % self.partitions

    def _append(self, topic: str, key: bytes | None, value: bytes) -> Record:
        parts = self._topic(topic)
        index = self._partition_for(key)
        part = parts[index]
        record = Record(topic, index, part.end, key, value, int(time.time() * 1000))
        part.records.append(record)
        self._appends += 1
        if self._appends % 1024 == 0:
            self._trim()
        for group in self._groups.values():
            for member in group.members:
                if (topic, index) in member._positions:
                    member._wake()
        return record

    def _trim(self) -> None:
        """Drop records every group committed past, keeping the newest ``keep_min``
        anyway (a group that joins late still sees recent history), and never more
        than ``retention_records``."""
        for topic, parts in self._topics.items():
            for index, part in enumerate(parts):
                tp = (topic, index)
                floor = part.base
                interested = [g for g in self._groups.values()
                              if tp in g.committed or any(topic in m.topics for m in g.members)]
                if interested:
                    floor = min(g.committed.get(tp, part.base) for g in interested)
                floor = min(floor, part.end - self.keep_min)
                floor = max(floor, part.end - self.retention_records)
                if floor > part.base:
                    del part.records[: floor - part.base]
                    part.base = floor

    def _join(self, member: MemorySubscription) -> None:
        group = self._groups.setdefault(member.group_id, _Group())
        for topic in member.topics:
            self._topic(topic)
        group.members.append(member)
        self._rebalance(group)

    def _leave(self, member: MemorySubscription) -> None:
        group = self._groups.get(member.group_id)
        if group is None or member not in group.members:
            return
        group.members.remove(member)
        member._revoke(list(member._positions))
        self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Split the partitions of the group's topics round-robin over its members."""
        wanted: dict[int, list[TopicPartition]] = {id(m): [] for m in group.members}
        topics = sorted({t for m in group.members for t in m.topics})
        turn = 0
        for topic in topics:
            takers = [m for m in group.members if topic in m.topics]
            for index in range(len(self._topics.get(topic, []))):
                member = takers[turn % len(takers)]
                wanted[id(member)].append((topic, index))
                turn += 1
        for member in group.members:
            new = set(wanted[id(member)])
            lost = [tp for tp in member._positions if tp not in new]
            if lost:
                member._revoke(lost)
            for tp in sorted(new - set(member._positions)):
                start = group.committed.get(tp)
                if start is None:
                    part = self._topics[tp[0]][tp[1]]
                    start = part.base if member.from_beginning else part.end
                member._positions[tp] = start
            member._wake()


class MemoryPublisher:
    """Appends to the in-process bus; durable as long as the process lives."""

    spool_bytes = 0
    spool_capacity_bytes = 0

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self.published: dict[tuple[str, str], int] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, topic: str, key: str, value: bytes) -> str:
        self._bus._append(topic, key.encode(), value)
        counter = (topic, "memory")
        self.published[counter] = self.published.get(counter, 0) + 1
        return "memory"


class MemorySubscription:
    """One member of a consumer group on the in-process bus."""

    def __init__(
        self, bus: MemoryBus, topics: list[str], group_id: str, *, from_beginning: bool
    ) -> None:
        self._bus = bus
        self.topics = topics
        self.group_id = group_id
        self.from_beginning = from_beginning
        self._positions: dict[TopicPartition, int] = {}
        self._outstanding = False  # records polled but not yet committed
        self._event = asyncio.Event()
        self._started = False
        self._turn = 0

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    async def start(self) -> None:
        if not self._started:
            self._started = True
            self._bus._join(self)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            self._bus._leave(self)
            self._positions.clear()

    def _wake(self) -> None:
        self._event.set()

    def _revoke(self, partitions: list[TopicPartition]) -> None:
        # Like the Kafka subscription's rebalance listener: positions are committed
        # on revocation only when the last polled batch was handled (committed).
        group = self._bus._groups[self.group_id]
        for tp in partitions:
            position = self._positions.pop(tp, None)
            if position is not None and not self._outstanding:
                group.committed[tp] = position

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        items = list(self._positions.items())
        if not items:
            return out
        self._turn = (self._turn + 1) % len(items)  # no partition starves the others
        for tp, position in items[self._turn :] + items[: self._turn]:
            if len(out) >= max_records:
                break
            part = self._bus._topics[tp[0]][tp[1]]
            position = max(position, part.base)
            if position >= part.end:
                continue
            start = position - part.base
            chunk = part.records[start : start + (max_records - len(out))]
            out.extend(chunk)
            self._positions[tp] = position + len(chunk)
        return out

    async def poll(self, timeout_s: float = 1.0, max_records: int = 1000) -> list[Record]:
        if not self._started:
            raise RuntimeError("subscription is not started")
        deadline = time.monotonic() + timeout_s
        while True:
            self._event.clear()
            records = self._take(max_records)
            if records:
                self._outstanding = True
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                async with asyncio.timeout(remaining):
                    await self._event.wait()
            except TimeoutError:
                return []

    async def commit(self) -> None:
        group = self._bus._groups.get(self.group_id)
        if group is not None:
            for tp, position in self._positions.items():
                group.committed[tp] = position
        self._outstanding = False

    async def lag(self) -> int:
        total = 0
        for (topic, index), position in self._positions.items():
            part = self._bus._topics[topic][index]
            total += max(0, part.end - max(position, part.base))
        return total
