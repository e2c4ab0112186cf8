"""The event pipeline end to end on both transports (real Kafka and the in-process bus):
publish → consumer loop → rolling metrics. Counts exact, quantiles within the sketch's
error, consumer groups split and merge exactly, a consumer dying mid-batch loses and
doubles nothing."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ragward.settings import Settings, load_settings
from telemetry.bus import EventBus
from telemetry.configuration import kafka_config, metrics_consumer_config
from telemetry.consumer import Delivery, EventConsumer
from telemetry.events import AuditEvent, UsageEvent, new_event_id
from telemetry.kafka_bus import KafkaBus
from telemetry.memory_bus import MemoryBus
from telemetry.metrics_consumer import MetricsConsumer
from telemetry.rolling import RELATIVE_ACCURACY, RollingMetrics
from tests.signing_support import sign

TENANTS = [f"tenant-{i}" for i in range(8)]


# ------------------------------------------------------------------ helpers (imported by
# the other test_events_* files)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Load:
    """Events for ``n`` requests: one audit each, one usage per 2xx."""

    audits: list[AuditEvent]
    usages: list[UsageEvent]

    @property
    def ids(self) -> set[str]:
        return {e.event_id for e in self.audits} | {e.event_id for e in self.usages}

    def latencies_s(self) -> list[float]:
        return [e.latency_ms / 1000 for e in self.audits]


def make_load(n: int, seed: int = 1, now: float | None = None, spread_s: float = 50) -> Load:
    rnd = random.Random(seed)
    now = time.time() if now is None else now
    audits, usages = [], []
    for _ in range(n):
        tenant = rnd.choice(TENANTS)
        status = rnd.choices([200, 401, 429, 500, 503], [85, 4, 4, 4, 3])[0]
        ts = iso(now - rnd.uniform(0, spread_s))
        request_id = new_event_id()
        audits.append(AuditEvent(event_id=new_event_id(), request_id=request_id, ts=ts,
                                 tenant=tenant, route="/v1/query", status=status,
                                 latency_ms=rnd.lognormvariate(3.5, 0.9)))
        if status == 200:
            usages.append(UsageEvent(event_id=new_event_id(), request_id=request_id, ts=ts,
                                     tenant=tenant, route="/v1/query", model="local",
                                     prompt_tokens=rnd.randint(50, 500),
                                     completion_tokens=rnd.randint(10, 100),
                                     embedding_tokens=8, cost_usd=0.0001,
                                     cached=rnd.random() < 0.25))
    return Load(audits, usages)


async def publish_load(
    bus: EventBus, settings: Settings, load: Load, concurrency: int = 64
) -> None:
    publisher = bus.publisher()
    await publisher.start()
    try:
        records = [(settings.topic_audit, e.tenant, sign(e)) for e in load.audits]
        records += [(settings.topic_usage, e.tenant, sign(e)) for e in load.usages]
        queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()
        for record in records:
            queue.put_nowait(record)

        async def worker() -> None:
            while not queue.empty():
                await publisher.publish(*queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await publisher.stop()


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def assert_quantiles_within_error(view: RollingMetrics, latencies: list[float]) -> None:
    for metric, q in (("latency_p50", 0.5), ("latency_p95", 0.95), ("latency_p99", 0.99)):
        [sample] = view.query(metric, "1h", [])
        want = exact_quantile(latencies, q)
        assert sample.value is not None
        assert abs(sample.value - want) <= RELATIVE_ACCURACY * want + 1e-12, (metric, sample, want)


async def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def kafka_settings(tmp_path: Path, bootstrap: str, unique: str, **extra: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", kafka_bootstrap=bootstrap,
        topic_audit=f"test.audit.{unique}", topic_usage=f"test.usage.{unique}",
        topic_alerts=f"test.alerts.{unique}", topic_dead_letter=f"test.dlq.{unique}", **extra,
    )


# ------------------------------------------------------------------ fixtures


@dataclass
class Transport:
    name: str
    settings: Settings
    bus: EventBus

    def new_bus(self) -> EventBus:
        """Another client of the same broker (Kafka) / the same bus (in-process)."""
        if isinstance(self.bus, KafkaBus):
            spool = self.settings.data_dir / f"spool-{id(self)}-{new_event_id()[:6]}"
            return KafkaBus(kafka_config(self.settings, spool_dir=spool))
        return self.bus


@pytest.fixture(params=["memory", "kafka"])
def transport(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Transport]:
    if request.param == "memory":
        settings = load_settings(data_dir=tmp_path / "data")
        yield Transport("memory", settings, MemoryBus(partitions=3))
        return
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    settings = kafka_settings(tmp_path, bootstrap, unique)
    yield Transport("kafka", settings, KafkaBus(kafka_config(settings)))


# ------------------------------------------------------------------ tests


async def test_consumer_counts_each_event_once_with_quantiles_within_sketch_error(
    transport: Transport, unique: str
) -> None:
    """N requests' events, some published twice and a few undecodable records: the metrics
    consumer handles each unique event once, counts exactly N requests, sends the garbage to
    the dead-letter topic, and its p50/p95/p99 lie within 1 % of the exact quantiles."""
    settings, bus = transport.settings, transport.bus
    load = make_load(2000, seed=11)
    await publish_load(bus, settings, load)
    publisher = bus.publisher()
    await publisher.start()
    try:
        for event in load.audits[:150]:  # redelivered by an at-least-once producer
            await publisher.publish(settings.topic_audit, event.tenant, sign(event))
        for junk in (b"not json", b'{"type": "audit"}', b'{"type": "martian", "event_id": "x"}'):
            await publisher.publish(settings.topic_audit, "tenant-0", junk)
    finally:
        await publisher.stop()

    consumer = MetricsConsumer(metrics_consumer_config(settings), transport.new_bus(),
                               group_id=f"metrics-{unique}")
    await consumer.start()
    try:
        total = len(load.audits) + len(load.usages)
        loop = consumer.loop
        await wait_until(lambda: loop.handled >= total and loop.dead_lettered >= 3, 30,
                         "every event handled")
        await asyncio.sleep(0.2)  # nothing more arrives
    finally:
        await consumer.stop()
    view = consumer.view
    assert consumer.loop.handled == total
    assert consumer.loop.duplicates == 150
    assert consumer.loop.dead_lettered == 3
    assert sum(view.totals.requests.values()) == len(load.audits)
    per_tenant = {s.labels["tenant"]: s.requests for s in view.query("request_rate", "1h",
                                                                     ["tenant"])}
    expected = {t: sum(1 for e in load.audits if e.tenant == t) for t in TENANTS}
    assert per_tenant == {t: c for t, c in expected.items() if c}
    errors = sum(1 for e in load.audits if e.status >= 500)
    [error_rate] = view.query("error_rate", "1h", [])
    assert error_rate.value == pytest.approx(errors / len(load.audits))
    tokens = sum(e.prompt_tokens + e.completion_tokens + e.embedding_tokens for e in load.usages)
    assert view.query("tokens_total", "1h", [])[0].value == tokens
    assert_quantiles_within_error(view, load.latencies_s())
    dead = [msgspec.json.decode(letter)
            for letter in await read_topic(transport, settings.topic_dead_letter, 3, unique)]
    assert sorted((d["value"], d["reason"]) for d in dead) == sorted([
        ("not json", "malformed"), ('{"type": "audit"}', "unsigned"),
        ('{"type": "martian", "event_id": "x"}', "unsigned")])
    assert {(d["topic"], d["group"]) for d in dead} == {(settings.topic_audit, f"metrics-{unique}")}


async def read_topic(transport: Transport, topic: str, expect: int, unique: str) -> list[bytes]:
    sub = transport.new_bus().subscribe([topic], f"reader-{unique}")
    await sub.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + 15
        while len(values) < expect and time.monotonic() < deadline:
            values += [r.value for r in await sub.poll(0.5)]
    finally:
        await sub.stop()
    return values


async def test_two_consumers_in_one_group_split_partitions_and_merge_exactly(
    transport: Transport, unique: str
) -> None:
    """Two metrics consumers of one group each own some partitions; together they handle
    every event once, and their merged state equals one view that saw everything."""
    settings = transport.settings
    group = f"metrics-{unique}"
    first = MetricsConsumer(metrics_consumer_config(settings), transport.new_bus(), group_id=group)
    second = MetricsConsumer(metrics_consumer_config(settings), transport.new_bus(), group_id=group)
    await first.start()
    await second.start()
    try:
        def split() -> bool:
            a, b = (c.loop._subscription.assignment for c in (first, second))  # type: ignore[union-attr]
            return bool(a) and bool(b) and not (a & b) and len(a | b) == 6
        await wait_until(split, 30, "both members to own partitions")
        load = make_load(3000, seed=5)
        await publish_load(transport.bus, settings, load)
        total = len(load.audits) + len(load.usages)
        await wait_until(lambda: first.loop.handled + second.loop.handled >= total, 30,
                         "all events handled")
    finally:
        await first.stop()
        await second.stop()
    assert first.loop.handled > 0 and second.loop.handled > 0
    assert first.loop.handled + second.loop.handled == total
    merged = RollingMetrics.merged([first.view, second.view])
    whole = RollingMetrics(merged.clock)
    whole.ingest([*load.audits, *load.usages])
    now = time.time()
    for metric in ("request_rate", "error_rate", "latency_p50", "latency_p99", "tokens_total"):
        assert merged.query(metric, "1h", ["tenant"], now=now) == \
            whole.query(metric, "1h", ["tenant"], now=now), metric
    assert sum(merged.totals.requests.values()) == len(load.audits)
    assert_quantiles_within_error(merged, load.latencies_s())


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no retry in the loop."""


async def test_consumer_dying_mid_batch_gets_redelivery_and_counts_each_once(
    transport: Transport, unique: str
) -> None:
    """A consumer that dies in the middle of its third batch committed only the first two;
    the next member of the group gets the rest, the half-handled batch included, and the
    committed-and-handled events of both add up to every event exactly once."""
    settings = transport.settings
    load = make_load(1500, seed=9)
    await publish_load(transport.bus, settings, load)
    total = len(load.audits) + len(load.usages)
    group = f"metrics-{unique}"

    committed_ids: list[str] = []  # what the dead consumer handled before it died
    batches = 0

    async def dying_handler(batch: list[Delivery]) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            raise Crash("killed mid-batch")
        committed_ids.extend(d.event.event_id for d in batch)

    dying = EventConsumer(transport.new_bus(), [settings.topic_audit, settings.topic_usage],
                          group, dying_handler, dead_letter_topic=settings.topic_dead_letter,
                          max_records=200)
    await dying.start()
    with pytest.raises(Crash):
        await dying.wait()
    await dying.stop()
    assert batches == 3 and 0 < len(committed_ids) < total

    survivor = MetricsConsumer(metrics_consumer_config(settings), transport.new_bus(),
                               group_id=group)
    await survivor.start()
    try:
        await wait_until(lambda: survivor.loop.handled >= total - len(committed_ids), 30,
                         "the rest redelivered")
        await asyncio.sleep(0.3)
    finally:
        await survivor.stop()
    assert survivor.loop.handled + len(committed_ids) == total
    seen_later = survivor.view.events
    assert seen_later == total - len(committed_ids)
