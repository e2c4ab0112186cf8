"""Rebuild an audit store from the Kafka audit topic (Kafka-specific: aiokafka directly).

Reads every partition of ``settings.topic_audit`` from a start position — the
beginning, an offset, or the first offset at or after a time
(``offsets_for_times``) — up to the end offsets captured when the replay
starts, and writes it through the same :meth:`AuditBackend.append` the consumer
uses. No consumer group is involved: nothing is committed, no running consumer
is disturbed. The target must be empty. From the beginning into an empty store
the chain heads come out identical to the live store's (same records, same
order, same hashes). Every record's signature is checked as the audit consumer checks
it (:mod:`telemetry.signing`): what fails is not written and is counted by reason in
:attr:`ReplayResult.rejections` (the live consumer dead-lettered the same records, so
both stores skip them and their chains agree).
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from ragward.errors import ConfigError, ValidationFailed
from telemetry.audit_store import AuditBackend
from telemetry.bus import Record
from telemetry.kafka_security import KafkaSecurity, start_client
from telemetry.signing import EventVerifier


@dataclass
class ReplayResult:
    records: int = 0
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)  # reason -> records refused
    seconds: float = 0.0
    start_offsets: dict[int, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)


class StoreNotEmpty(ValidationFailed):
    default_message = "the replay target store is not empty"


async def replay_topic(
    bootstrap: str,
    topic: str,
    backend: AuditBackend,
    *,
    from_offset: int | None = None,
    from_time_ms: int | None = None,
    progress: bool = True,
    batch: int = 5000,
    client_id: str = "ragward-audit-replay",
    security: KafkaSecurity | None = None,
    verifier: EventVerifier,
) -> ReplayResult:
    """Replay ``topic`` into the empty ``backend``; return what was read and written."""
    if from_offset is not None and from_time_ms is not None:
        raise ValidationFailed("give --from-offset or --from-time, not both")
    if from_offset is not None and from_offset < 0:
        raise ValidationFailed("--from-offset must be >= 0", field="from_offset")
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(1, thread_name_prefix="audit-replay")  # one connection
    try:
        return await _replay(
            loop,
            writer,
            bootstrap,
            topic,
            backend,
            from_offset,
            from_time_ms,
            progress,
            batch,
            client_id,
            security or KafkaSecurity(),
            verifier,
        )
    finally:
        await loop.run_in_executor(writer, backend.close_thread)
        writer.shutdown(wait=True)


async def _replay(
    loop: asyncio.AbstractEventLoop,
    writer: ThreadPoolExecutor,
    bootstrap: str,
    topic: str,
    backend: AuditBackend,
    from_offset: int | None,
    from_time_ms: int | None,
    progress: bool,
    batch: int,
    client_id: str,
    security: KafkaSecurity,
    verifier: EventVerifier,
) -> ReplayResult:
    if not await loop.run_in_executor(writer, backend.is_empty):
        raise StoreNotEmpty(
            f"{backend.description} already holds audit records; replay needs a fresh store"
        )
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id=client_id,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=16 << 20,
        **security.client_kwargs(),
    )
    result = ReplayResult()
    bar: Any = None
    try:
        await start_client(consumer, security, bootstrap)
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # topic metadata not cached yet
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ConfigError(f"topic {topic} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        starts: dict[TopicPartition, int] = {}
        if from_time_ms is not None:
            found = await consumer.offsets_for_times({tp: from_time_ms for tp in tps})
            for tp in tps:
                meta = found.get(tp)
                starts[tp] = meta.offset if meta is not None else ends[tp]
        else:
            for tp in tps:
                starts[tp] = max(begins[tp], from_offset or 0)
        for tp in tps:
            starts[tp] = min(starts[tp], ends[tp])
            consumer.seek(tp, starts[tp])
        result.start_offsets = {tp.partition: starts[tp] for tp in tps}
        result.end_offsets = {tp.partition: ends[tp] for tp in tps}
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        total = sum(ends[tp] - starts[tp] for tp in tps)
        bar = tqdm(total=total, desc="replay", unit="rec", file=sys.stderr, disable=not progress)
        for tp in tps:
            if tp not in remaining:
                consumer.pause(tp)
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=batch)
            records: list[Record] = []
            for tp, messages in fetched.items():
                end = ends[tp]
                for m in messages:
                    if m.offset >= end:
                        break
                    records.append(
                        Record(m.topic, m.partition, m.offset, m.key, m.value or b"", m.timestamp)
                    )
                done = bool(messages) and messages[-1].offset >= end - 1
                if done or await consumer.position(tp) >= end:
                    remaining.discard(tp)
                    consumer.pause(tp)
            trusted = []
            for record in records:
                rejection = await verifier.verify(record.value)
                if rejection is None:
                    trusted.append(record)
                else:
                    result.rejected += 1
                    result.rejections[rejection.reason] = (
                        result.rejections.get(rejection.reason, 0) + 1)
            result.records += len(records) - len(trusted)
            bar.update(len(records) - len(trusted))
            records = trusted
            if records:
                records.sort(key=lambda r: (r.partition, r.offset))
                appended = await loop.run_in_executor(writer, backend.append, records)
                result.records += len(records)
                result.written += appended.written
                result.duplicates += appended.duplicates
                bar.update(len(records))
    finally:
        if bar is not None:
            bar.close()
        await consumer.stop()
    result.seconds = time.perf_counter() - started
    return result
