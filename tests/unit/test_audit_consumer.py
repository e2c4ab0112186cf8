"""The audit consumer's loop: store first, then commit; retry on store failure; prune."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ragward.settings import load_settings
from telemetry.audit_consumer import AuditConsumer
from telemetry.audit_store import AppendResult, AuditStore, open_backend
from telemetry.bus import Record
from telemetry.configuration import audit_consumer_config, audit_store_config
from telemetry.events import AuditEvent, now_rfc3339
from tests.audit_support import verifying
from tests.signing_support import sign


class ListSubscription:
    """A local stub of the Subscription protocol: serves given batches, logs calls."""

    def __init__(self, batches: list[list[Record]], calls: list[str]) -> None:
        self.batches = batches
        self.calls = calls

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def poll(self, timeout_s: float = 1.0, max_records: int = 1000) -> list[Record]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout_s)
        return []

    async def commit(self) -> None:
        self.calls.append("commit")

    async def lag(self) -> int:
        return 0


class FlakyStore(AuditStore):
    """Fails the first ``failures`` appends, logging each attempt."""

    def __init__(self, inner: AuditStore, failures: int, calls: list[str]) -> None:
        super().__init__(inner.backend)
        self.failures = failures
        self.calls = calls
        self.pruned: list[float] = []

    async def append(self, records: Any) -> AppendResult:
        self.calls.append("append")
        if self.failures:
            self.failures -= 1
            raise OSError("disk unavailable")
        result = await super().append(records)
        self.calls.append("stored")
        return result

    async def prune(self, now: Any = None) -> int:
        self.pruned.append(now)
        return 0


def _records(n: int, topic: str) -> list[Record]:
    return [
        Record(
            topic,
            0,
            i,
            b"acme",
            sign(AuditEvent(event_id=f"e{i}", request_id="r", ts=now_rfc3339())),
            0,
        )
        for i in range(n)
    ]


async def test_batch_is_committed_only_after_the_store_holds_it(tmp_path: Path) -> None:
    """Store failures are retried on the same batch; commit comes after 'stored', never before."""
    settings = load_settings(data_dir=tmp_path)
    calls: list[str] = []
    inner = AuditStore(open_backend(audit_store_config(settings)))
    store = FlakyStore(inner, failures=2, calls=calls)
    sub = ListSubscription([_records(5, settings.topic_audit)], calls)
    consumer = AuditConsumer(
        store, sub, topic=settings.topic_audit, poll_timeout_s=0.01, clock=lambda: 1000.0,
        **verifying(settings),
    )
    try:
        assert await consumer.handle(await sub.poll())
        assert calls == ["append", "append", "append", "stored", "commit"]
        assert consumer.written == 5
        assert consumer.metrics.records._value.get() == 5
    finally:
        await store.close()
        await inner.close()


async def test_start_prunes_and_stop_stops_the_subscription(tmp_path: Path) -> None:
    """Retention runs when the loop starts; stop ends the loop and the subscription, once."""
    settings = load_settings(data_dir=tmp_path)
    calls: list[str] = []
    inner = AuditStore(open_backend(audit_store_config(settings)))
    store = FlakyStore(inner, failures=0, calls=calls)
    sub = ListSubscription([_records(3, settings.topic_audit)], calls)
    consumer = AuditConsumer(
        store, sub, topic=settings.topic_audit, poll_timeout_s=0.01, clock=lambda: 1234.0,
        **verifying(settings),
    )
    try:
        await consumer.start()
        while consumer.written < 3:
            await consumer._pause(0.01)
        await consumer.stop()
        await consumer.stop()
        assert store.pruned == [1234.0]
        assert calls.count("stop") == 1 and calls[0] == "start"
        assert calls.index("commit") > calls.index("stored")
    finally:
        await store.close()
        await inner.close()


async def test_embedded_on_the_in_process_bus(tmp_path: Path) -> None:
    """As `ragward serve` runs it: MemoryBus → AuditConsumer → SQLite; every event once."""
    from telemetry.memory_bus import MemoryBus

    settings = load_settings(data_dir=tmp_path, audit_checkpoint_every=5)
    bus = MemoryBus(partitions=3)
    publisher = bus.publisher()
    await publisher.start()
    store = AuditStore(open_backend(audit_store_config(settings)))
    consumer = AuditConsumer.from_bus(audit_consumer_config(settings), bus, store,
                                      poll_timeout_s=0.05)
    try:
        for i in range(30):
            event = AuditEvent(
                event_id=f"e{i}", request_id=f"r{i}", ts=now_rfc3339(), tenant=f"t{i % 4}"
            )
            await publisher.publish(settings.topic_audit, event.tenant, sign(event))
        await publisher.publish(
            settings.topic_audit,
            "t0",
            sign(AuditEvent(event_id="e0", request_id="again", ts=now_rfc3339(), tenant="t0")),
        )
        await consumer.start()
        for _ in range(200):
            if consumer.written + consumer.duplicates >= 31:
                break
            await asyncio.sleep(0.02)
        assert (consumer.written, consumer.duplicates) == (30, 1)
        report = await store.verify()
        assert report.ok and report.records == 30
    finally:
        await consumer.stop()
        await publisher.stop()
        await store.close()
