"""Faults against real Kafka. After each one, every publish that was acknowledged is
delivered, and after the consumers' dedupe counted exactly once:

* the broker stopped in the middle of a load and restarted (a private broker, same port
  and data directory) — the spool takes over and drains;
* the publishing process SIGKILLed in the middle of a load and restarted on its spool;
* a consumer process SIGKILLed in the middle of a batch — its group's next member gets
  the uncommitted records again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pytest

from ragward import devservices
from ragward.errors import DependencyUnavailable
from ragward.logs import configure_logging
from ragward.settings import Settings, load_settings
from telemetry.configuration import kafka_config, metrics_consumer_config
from telemetry.consumer import Delivery, EventConsumer
from telemetry.events import AuditEvent, encode, new_event_id
from telemetry.kafka_bus import KafkaBus
from telemetry.metrics_consumer import MetricsConsumer
from tests.integration.test_events_pipeline import (
    TENANTS,
    iso,
    kafka_settings,
    make_load,
    publish_load,
    wait_until,
)
from tests.services import fail_or_skip
from tests.signing_support import sign

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]


def audit_event(i: int) -> AuditEvent:
    return AuditEvent(event_id=new_event_id(), request_id=new_event_id(), ts=iso(time.time()),
                      tenant=TENANTS[i % len(TENANTS)], route="/v1/query", status=200,
                      latency_ms=5.0 + i % 50)


async def collect_ids(settings: Settings, topics: list[str], group: str, expect: set[str],
                      timeout_s: float = 30) -> tuple[list[str], int]:
    """Every event id the consumer loop handles (after its dedupe), and its duplicate count."""
    handled: list[str] = []

    async def handler(batch: list[Delivery]) -> None:
        handled.extend(d.event.event_id for d in batch)

    bus = KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / f"spool-{group}"))
    consumer = EventConsumer(bus,
                             topics, group, handler, dead_letter_topic=settings.topic_dead_letter)
    await consumer.start()
    try:
        await wait_until(lambda: expect <= set(handled), timeout_s, "every acknowledged id")
        await asyncio.sleep(0.5)  # let late duplicates arrive too
    finally:
        await consumer.stop()
    return handled, consumer.duplicates


# ------------------------------------------------------------------ broker outage


@dataclass
class Broker:
    service: devservices.RunningService


@pytest.fixture
async def private_kafka() -> AsyncIterator[Broker]:
    """A broker of this test's own, so stopping it does not disturb the session's."""
    try:
        service = await asyncio.to_thread(devservices.start_kafka)
    except devservices.ServiceError as exc:
        fail_or_skip("private Kafka", exc)
    broker = Broker(service)
    try:
        yield broker
    finally:
        await asyncio.to_thread(devservices.stop, broker.service)


async def test_kafka_stopped_mid_load_spool_takes_over_and_every_ack_arrives_once(
    private_kafka: Broker, tmp_path: Path, unique: str
) -> None:
    """Publishers keep going while the broker is stopped and restarted on the same port and
    data: publishes are fsynced to the spool meanwhile, the spool drains when the broker is
    back, and every acknowledged event is consumed exactly once after dedupe."""
    settings = kafka_settings(tmp_path, private_kafka.service.address, unique,
                              kafka_ack_timeout_s=0.5)
    topic = settings.topic_audit
    bus = KafkaBus(kafka_config(settings))
    publisher = bus.publisher()
    await publisher.start()
    acked: list[str] = []
    refused: list[str] = []
    stop_load = asyncio.Event()

    async def worker(w: int) -> None:
        i = w
        while not stop_load.is_set():
            event = audit_event(i)
            try:
                # signed as a gateway signs: the metrics consumer verifies every event
                await publisher.publish(topic, event.tenant, sign(event))
                acked.append(event.event_id)
            except DependencyUnavailable:
                refused.append(event.event_id)
            i += 16
            await asyncio.sleep(0.01)

    workers = [asyncio.create_task(worker(w)) for w in range(16)]
    try:
        await wait_until(lambda: len(acked) > 300, 20, "load running")
        await asyncio.to_thread(devservices.stop, private_kafka.service, keep_data=True)
        stopped_at = len(acked)
        await asyncio.sleep(1.0)
        private_kafka.service = await asyncio.to_thread(devservices.restart_kafka,
                                                        private_kafka.service)
        await asyncio.sleep(0.5)
    finally:
        stop_load.set()
        await asyncio.gather(*workers)
    try:
        assert len(acked) > stopped_at + 100, "publishes continued while Kafka was down"
        assert await publisher.wait_drained(30), "spool drained after Kafka returned"
        assert publisher.published.get((topic, "spool"), 0) > 100
        assert publisher.published.get((topic, "kafka"), 0) > 100
    finally:
        await publisher.stop()
    assert refused == []

    metrics = MetricsConsumer(metrics_consumer_config(settings),
                              KafkaBus(kafka_config(settings, spool_dir=tmp_path / "m")),
                              group_id=f"metrics-{unique}")
    handled: list[str] = []
    ingest = metrics.loop.handler

    async def recording(batch: list[Delivery]) -> None:
        await ingest(batch)
        handled.extend(d.event.event_id for d in batch)

    metrics.loop.handler = recording
    await metrics.start()
    try:
        await wait_until(lambda: set(acked) <= set(handled), 30, "every acknowledged event")
        await asyncio.sleep(0.5)  # late duplicates, if any, arrive and are dropped
    finally:
        await metrics.stop()
    assert len(handled) == len(set(handled)), "counted once after dedupe"
    assert set(handled) == set(acked)
    assert sum(metrics.view.totals.requests.values()) == len(acked)
    print(f"acked={len(acked)} spooled={publisher.published.get((topic, 'spool'))} "
          f"duplicates_dropped={metrics.loop.duplicates}")


# ------------------------------------------------------------------ publisher SIGKILL


def publisher_child() -> None:
    """Child process: publish audit events with 32 workers, print each acknowledged id."""
    data_dir, bootstrap, topic = sys.argv[1:4]
    configure_logging("json", "error")  # stdout carries the acknowledged ids only
    settings = load_settings(data_dir=Path(data_dir), kafka_bootstrap=bootstrap,
                             topic_audit=topic, kafka_ack_timeout_s=0.3, log_level="error")

    async def run() -> None:
        publisher = KafkaBus(kafka_config(settings)).publisher()
        await publisher.start()

        async def worker(w: int) -> None:
            i = w
            while True:
                event = audit_event(i)
                await publisher.publish(topic, event.tenant, encode(event))
                sys.stdout.write(event.event_id + "\n")
                sys.stdout.flush()
                i += 32

        await asyncio.gather(*(worker(w) for w in range(32)))

    asyncio.run(run())


async def test_publisher_sigkilled_mid_load_restarts_on_its_spool(
    kafka_bootstrap: str, tmp_path: Path, unique: str
) -> None:
    """A publisher that cannot reach Kafka spools; SIGKILL it mid-load (a write may be torn);
    a new publisher on the same spool delivers every acknowledged record, once after dedupe."""
    settings = kafka_settings(tmp_path, kafka_bootstrap, unique)
    unreachable = f"127.0.0.1:{devservices.free_port()}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "from tests.integration.test_events_faults import publisher_child; publisher_child()",
        str(settings.data_dir), unreachable, settings.topic_audit,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert child.stdout is not None
    acked: list[str] = []
    try:
        async with asyncio.timeout(30):
            while len(acked) < 1000:
                line = await child.stdout.readline()
                if not line:
                    break
                acked.append(line.decode().strip())
                assert len(acked[-1]) == 32, acked[-1]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        rest = await child.stdout.read()
        await child.wait()
    acked += [line for line in rest.decode().split("\n")[:-1] if line]  # whole lines only
    assert len(acked) >= 1000 and child.returncode == -signal.SIGKILL

    bus = KafkaBus(kafka_config(settings))  # same data_dir, same spool, Kafka reachable now
    publisher = bus.publisher()
    await publisher.start()
    try:
        assert await publisher.wait_drained(30)
        assert publisher.durable.drained >= len(acked)
    finally:
        await publisher.stop()
    handled, _ = await collect_ids(settings, [settings.topic_audit], f"check-{unique}",
                                   set(acked))
    assert len(handled) == len(set(handled))
    assert set(acked) <= set(handled)
    # what was handled but not in `acked` can only be records fsynced just before the kill
    assert len(set(handled) - set(acked)) <= 64


# ------------------------------------------------------------------ consumer SIGKILL


def consumer_child() -> None:
    """Child process: consume in batches of 200, write each batch's ids after a header line,
    and SIGKILL itself half-way through batch ``die_at``."""
    data_dir, bootstrap, audit, usage, group, out, die_at = sys.argv[1:8]
    configure_logging("json", "error")
    settings = load_settings(data_dir=Path(data_dir), kafka_bootstrap=bootstrap,
                             topic_audit=audit, topic_usage=usage, log_level="error")
    batches = 0

    async def run(sink: TextIO) -> None:
        async def handler(batch: list[Delivery]) -> None:
            nonlocal batches
            batches += 1
            sink.write(f"BATCH {batches}\n")
            for n, delivery in enumerate(batch):
                if batches == int(die_at) and n == len(batch) // 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                sink.write(delivery.event.event_id + "\n")

        bus = KafkaBus(kafka_config(settings), session_timeout_ms=6000)
        consumer = EventConsumer(bus, [audit, usage], group, handler,
                                 dead_letter_topic=settings.topic_dead_letter, max_records=200)
        await consumer.start()
        await consumer.wait()

    with open(out, "a", buffering=1) as sink:  # line-buffered: what was written survives
        asyncio.run(run(sink))


async def test_consumer_sigkilled_mid_batch_redelivers_and_counts_each_once(
    kafka_bootstrap: str, tmp_path: Path, unique: str
) -> None:
    """The killed consumer committed its first batches only; the group's next member gets the
    rest (the half-handled batch too) and together they count every event exactly once."""
    settings = kafka_settings(tmp_path, kafka_bootstrap, unique)
    load = make_load(1500, seed=21)
    await publish_load(KafkaBus(kafka_config(settings)), settings, load)
    total = len(load.audits) + len(load.usages)
    group = f"metrics-{unique}"
    out = tmp_path / "handled.txt"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "from tests.integration.test_events_faults import consumer_child; consumer_child()",
        str(tmp_path / "child"), kafka_bootstrap, settings.topic_audit, settings.topic_usage,
        group, str(out), "3", cwd=REPO, stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(30):
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    batches: dict[int, list[str]] = {}
    current = 0
    for line in out.read_text().splitlines():
        if line.startswith("BATCH "):
            current = int(line.split()[1])
            batches[current] = []
        elif line:
            batches[current].append(line)
    assert sorted(batches) == [1, 2, 3]
    committed = batches[1] + batches[2]
    half_done = batches[3]
    assert committed and half_done

    survivor = MetricsConsumer(metrics_consumer_config(settings), KafkaBus(kafka_config(settings)),
                               group_id=group)
    await survivor.start()
    try:
        await wait_until(lambda: survivor.loop.handled >= total - len(committed), 30,
                         "the uncommitted rest redelivered")
        await asyncio.sleep(0.3)
    finally:
        await survivor.stop()
    assert survivor.loop.handled == total - len(committed)
    assert survivor.view.events + len(committed) == total
    requests = sum(survivor.view.totals.requests.values())
    assert requests + sum(1 for e in load.audits if e.event_id in set(committed)) == \
        len(load.audits)
