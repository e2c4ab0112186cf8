"""Durability on a three-broker Kafka (RF 3, ``min.insync.replicas=2``) that loses brokers.

Under load through the gateway, the leader of an audit partition is SIGKILLed: the
cluster elects another leader and the gateway spools at most about as long as the
election takes. Then a second broker is SIGKILLed: with one in-sync replica left an
``acks=all`` write cannot be acknowledged, so the gateway answers from its fsynced
spool (or 503 when that is full) and acknowledges nothing that is not durable. When
both brokers return the spool drains in order, and every request that got a 2xx has
exactly one record in the audit store (the audit consumer deduplicates).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ragward import devservices
from ragward.devcluster import KafkaCluster, start_kafka_cluster
from telemetry.audit_consumer import AuditConsumer
from telemetry.audit_store import open_store
from telemetry.configuration import audit_store_config, default_sqlite_path, make_bus
from telemetry.events import AuditEvent, any_decoder
from telemetry.publisher import DurablePublisher, Mode
from tests import audit_support
from tests.audit_support import subscribe
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.integration.test_audit_kafka import _count_at_least, _until
from tests.services import fail_or_skip
from tests.upstream_server import UpstreamServer

pytestmark = pytest.mark.kafka


@pytest.fixture
async def cluster() -> AsyncIterator[KafkaCluster]:
    """Three brokers of this test's own (it kills two of them)."""
    try:
        started = await asyncio.to_thread(start_kafka_cluster)
    except devservices.ServiceError as exc:
        fail_or_skip("the three-broker cluster", exc)
    try:
        yield started
    finally:
        await asyncio.to_thread(started.stop)


@dataclass
class SpoolWatch:
    """Spans during which the publisher was not live with an empty spool (polled)."""

    publisher: DurablePublisher
    spans: list[tuple[float, float]] = field(default_factory=list)
    _since: float | None = None

    async def run(self) -> None:
        while True:
            spooling = self.publisher.mode is Mode.SPOOLING or not self.publisher.spool.is_empty
            now = time.monotonic()
            if spooling and self._since is None:
                self._since = now
            elif not spooling and self._since is not None:
                self.spans.append((self._since, now))
                self._since = None
            await asyncio.sleep(0.01)

    def longest_s(self, after: float = 0.0, before: float = float("inf")) -> float:
        return max((b - a for a, b in self.spans if after <= a < before), default=0.0)


@dataclass
class Load:
    """Requests through the gateway; the request id of every 2xx in order, every status."""

    url: str
    ok: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    n: int = 0

    async def run(self, stop: asyncio.Event, concurrency: int) -> None:
        async def worker(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                self.n += 1
                r = await client.post(self.url + "/v1/query", json={"question": f"q {self.n}"},
                                      headers=bearer())
                self.statuses[r.status_code] += 1
                if r.status_code == 200:
                    self.ok.append(r.headers["x-request-id"])
                await asyncio.sleep(0.005)

        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))


async def leader_of(bootstrap: str, topic: str, partition: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        leader = consumer._client.cluster.leader_for_partition(TopicPartition(topic, partition))
        return -1 if leader is None else int(leader)
    finally:
        await consumer.stop()


async def wait_new_leader(bootstrap: str, topic: str, partition: int, dead: int,
                          timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (leader := await leader_of(bootstrap, topic, partition)) in (dead, -1):
        assert time.monotonic() < deadline, f"no new leader for {topic}/{partition}"
        await asyncio.sleep(0.1)
    assert leader != dead


async def topic_settings(bootstrap: str, topic: str) -> tuple[int, str]:
    """(replication factor, min.insync.replicas) of ``topic`` as the cluster reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        replicas = len(described[0]["partitions"][0]["replicas"])
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})])
        entries = configs[0].to_object()["resources"][0]["config_entries"]
        return replicas, next(str(e["config_value"]) for e in entries
                              if e["config_names"] == "min.insync.replicas")
    finally:
        await admin.close()


async def audit_order(bootstrap: str, topic: str, expect: int) -> dict[int, list[str]]:
    """Request ids of the audit records per partition, in offset order."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    order: dict[int, list[str]] = {}
    try:
        async with asyncio.timeout(60):
            while sum(len(v) for v in order.values()) < expect:
                for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                    for record in records:
                        event = any_decoder.decode(record.value)
                        if isinstance(event, AuditEvent):
                            order.setdefault(tp.partition, []).append(event.request_id)
    finally:
        await consumer.stop()
    return order


async def test_cluster_loses_a_leader_then_a_quorum_and_every_2xx_has_one_audit_record(
    cluster: KafkaCluster, upstream: UpstreamServer, tmp_path: Path, unique: str
) -> None:
    """SIGKILL the audit partition's leader under load: a new leader is elected and the
    gateway spools no longer than about the election; SIGKILL a second broker: acks=all
    cannot be met, the gateway answers only from its fsynced spool (2xx) or 503; restart
    both: the spool drains in publish order and every 2xx has exactly one record in the
    audit store."""
    settings = gateway_settings(
        tmp_path, upstream.url, kafka_bootstrap=cluster.bootstrap, kafka_replication_factor=3,
        topic_audit=f"audit-{unique}", topic_usage=f"usage-{unique}",
        quota_rpm=10_000_000)  # durability under test, not quotas: no 429 on a fast machine
    topic = settings.topic_audit
    async with running_gateway(settings, bus=make_bus(settings)) as gw:
        url = str(gw.client.base_url).rstrip("/")
        publisher: DurablePublisher = gw.app.state.components.publisher.durable
        r = await gw.client.post("/v1/query", json={"question": "warm"}, headers=bearer())
        assert r.status_code == 200
        first = r.headers["x-request-id"]
        assert await topic_settings(cluster.bootstrap, topic) == (3, "2")
        # a fresh topic's first write may outwait the ack timeout (leaders being elected)
        assert await publisher.wait_drained(30), "live before the faults"
        watch = SpoolWatch(publisher)
        watcher = asyncio.create_task(watch.run())
        load, stop = Load(url), asyncio.Event()
        runner = asyncio.create_task(load.run(stop, concurrency=8))
        try:
            await _wait(lambda: len(load.ok) >= 200, 30, "load running")
            # -- one broker: the leader of the partition the test tenant writes to
            partition = await _partition_of(cluster.bootstrap, topic)
            leader = await leader_of(cluster.bootstrap, topic, partition)
            killed_at = time.monotonic()
            await asyncio.to_thread(cluster.kill, leader)
            await wait_new_leader(cluster.bootstrap, topic, partition, leader)
            election_s = time.monotonic() - killed_at
            live = await publisher.wait_drained(60)
            assert live, (f"still spooling {time.monotonic() - killed_at:.1f} s after the kill "
                          f"(election {election_s:.1f} s); drained {publisher.drained}, "
                          f"spool bytes {publisher.spool_bytes}, spans {watch.spans}")
            ok_before = len(load.ok)
            await _wait(lambda: len(load.ok) >= ok_before + 200, 30, "load after the election")
            longest_first = watch.longest_s(after=killed_at)
            stop.set()
            await runner
            # -- two brokers: one in-sync replica left, acks=all cannot be met
            second = next(n for n in (1, 2, 3) if n != leader)
            spool_path_before = publisher.published.get((topic, "spool"), 0)
            await asyncio.to_thread(cluster.kill, second)
            outage_at = time.monotonic()
            sequential, stop = Load(url), asyncio.Event()
            runner = asyncio.create_task(sequential.run(stop, concurrency=1))
            await _wait(lambda: len(sequential.ok) >= 40, 60, "answers while spooling")
            stop.set()
            await runner
            spooled = publisher.published.get((topic, "spool"), 0) - spool_path_before
            assert publisher.mode is Mode.SPOOLING and not publisher.spool.is_empty
            # every 2xx of the outage was fsynced to the spool: none acknowledged by one copy
            assert spooled >= len(sequential.ok)
            restart_at = time.monotonic()
            await asyncio.to_thread(cluster.restart, [leader, second])
            up_at = time.monotonic()
            assert await publisher.wait_drained(120), "spool drained after the brokers returned"
            drained_at = time.monotonic()
        finally:
            stop.set()
            await asyncio.gather(runner, return_exceptions=True)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    acknowledged = [first, *load.ok, *sequential.ok]
    assert set(load.statuses) == {200}, load.statuses  # one broker down: never refused
    assert set(sequential.statuses) <= {200, 503}, sequential.statuses

    store = open_store(audit_store_config(settings))
    consumer = AuditConsumer(store, subscribe(settings, f"audit-{unique}"), topic=topic,
                             poll_timeout_s=0.2, **audit_support.verifying(settings))
    await consumer.start()
    try:
        await _until(lambda: _count_at_least(store, len(set(acknowledged))), within=90)
    finally:
        await consumer.stop()
        await store.close()
    with sqlite3.connect(default_sqlite_path(settings)) as db:
        per_request = dict(db.execute(
            "SELECT request_id, COUNT(*) FROM audit_records GROUP BY request_id").fetchall())
    assert all(per_request.get(rid) == 1 for rid in acknowledged), "a 2xx without one record"
    # the outage's requests were sequential: their records sit in publish order
    order = await audit_order(cluster.bootstrap, topic, len(acknowledged))
    outage = set(sequential.ok)
    in_topic = [rid for rid in order[partition] if rid in outage]
    assert list(dict.fromkeys(in_topic)) == sequential.ok, "the spool drained out of order"

    figures = {
        "requests": load.n + sequential.n + 1, "2xx": len(acknowledged),
        "503": sequential.statuses[503], "records": sum(per_request.values()),
        "spooled (outage)": spooled, "election s": round(election_s, 2),
        "longest spool s (leader lost)": round(longest_first, 2),
        "longest spool s (quorum lost)": round(watch.longest_s(after=outage_at), 2),
        "brokers back s": round(up_at - restart_at, 2),
        "drain s (after brokers back)": round(drained_at - up_at, 2),
    }
    print("\nthree-broker fault figures: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    # spooling starts when an ack times out (2 s) and ends once the drain's backoff retries
    # after the election: about the election, never much beyond it
    assert longest_first <= election_s + 2.0, figures


async def _partition_of(bootstrap: str, topic: str) -> int:
    """The partition the test's one tenant writes to (records are keyed by tenant)."""
    order = await audit_order(bootstrap, topic, 1)
    assert len(order) == 1, order.keys()
    return next(iter(order))


async def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.05)
