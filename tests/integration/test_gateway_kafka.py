"""The gateway on real Kafka: one audit event per request, nothing lost across faults.

"Exactly one audit record" is judged the way the audit store judges it: by
distinct ``event_id`` per request (a record both spooled and later delivered is
one record, deduplicated by the consumers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from ragward import devservices
from ragward.devservices import RunningService, free_port
from telemetry.configuration import make_bus
from telemetry.events import AuditEvent, UsageEvent, any_decoder
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.integration.test_gateway_processes import gateway_process, wait_healthy
from tests.upstream_server import UpstreamServer


@pytest.fixture
def private_kafka() -> Iterator[RunningService]:
    """A broker of this test's own, so it can be stopped without hurting the others."""
    service = devservices.start_kafka()
    holder = [service]
    yield service
    with contextlib.suppress(Exception):
        devservices.stop(holder[-1])


async def read_events(bootstrap: str, topic: str, expect_at_least: int,
                      timeout: float = 30) -> list[object]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    events: list[object] = []
    try:
        async with asyncio.timeout(timeout):
            while len(events) < expect_at_least:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    events.extend(any_decoder.decode(r.value) for r in records)
        # anything straggling (duplicates) within a short grace period
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            events.extend(any_decoder.decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return events


def audit_ids_by_request(events: list[object]) -> dict[str, set[str]]:
    by_request: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if isinstance(event, AuditEvent):
            by_request[event.request_id].add(event.event_id)
    return by_request


async def test_every_request_kind_yields_exactly_one_audit_event_on_kafka(
    tmp_path: Path, upstream: UpstreamServer, kafka_bootstrap: str, unique: str
) -> None:
    """N requests of every kind through the gateway → exactly N audit events on Kafka
    (count and unique ids), and one usage event per answered request."""
    settings = gateway_settings(
        tmp_path, upstream.url, kafka_bootstrap=kafka_bootstrap,
        topic_audit=f"audit-{unique}", topic_usage=f"usage-{unique}")
    bus = make_bus(settings)
    kinds = {
        "allowed": ({"question": "q"}, bearer()),
        "denied": ({"question": "q"}, {}),
        "forbidden": ({"question": "q"}, bearer(roles=["compliance"])),
        "malformed": ({"question": 7}, bearer()),
    }
    per_kind = 5
    async with running_gateway(settings, bus=bus) as gw:
        statuses: dict[str, list[int]] = defaultdict(list)
        for name, (body, headers) in kinds.items():
            for i in range(per_kind):
                payload = {**body, "question": f"{body['question']}-{i}"} if name == "allowed" \
                    else body
                r = await gw.client.post("/v1/query", json=payload, headers=headers)
                statuses[name].append(r.status_code)
    assert statuses == {"allowed": [200] * 5, "denied": [401] * 5, "forbidden": [403] * 5,
                        "malformed": [422] * 5}
    total = per_kind * len(kinds)
    audit = await read_events(kafka_bootstrap, settings.topic_audit, total)
    usage = await read_events(kafka_bootstrap, settings.topic_usage, per_kind)
    assert len(audit) == total
    assert len({e.event_id for e in audit}) == total  # type: ignore[attr-defined]
    decisions = sorted(e.decision for e in audit)  # type: ignore[attr-defined]
    assert decisions == sorted(["allow"] * 5 + ["deny"] * 10 + ["invalid"] * 5)
    answered = [e for e in usage if isinstance(e, UsageEvent)]
    assert len(answered) == per_kind and all(u.total_tokens == 55 for u in answered)


async def _load(url: str, n: int, ok: list[str], stop_after: asyncio.Event | None = None,
                concurrency: int = 8) -> None:
    """Send n queries; remember the request id of every 2xx."""
    counter = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            try:
                r = await client.post(url + "/v1/query", json={"question": f"load {i}"},
                                      headers=bearer())
            except httpx.TransportError:
                continue  # the gateway died under us: no 2xx, no promise
            if r.status_code == 200:
                ok.append(r.headers["x-request-id"])
            await asyncio.sleep(0.005)

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


async def test_kafka_stopped_mid_load_loses_nothing(
    tmp_path: Path, upstream: UpstreamServer, private_kafka: RunningService, unique: str
) -> None:
    """Kafka stopped mid-load and restarted: the gateway keeps answering from its spool,
    and afterwards every 2xx request has exactly one audit event on the topic."""
    settings = gateway_settings(
        tmp_path, upstream.url, kafka_bootstrap=private_kafka.address,
        topic_audit=f"audit-{unique}", topic_usage=f"usage-{unique}", kafka_ack_timeout_s=0.5)
    bus = make_bus(settings)
    ok: list[str] = []
    async with running_gateway(settings, bus=bus) as gw:
        url = str(gw.client.base_url).rstrip("/")
        await _load(url, 40, ok)
        await asyncio.to_thread(devservices.stop, private_kafka, keep_data=True)
        await _load(url, 40, ok)
        spooled = (await gw.client.get("/ready")).json()
        restarted = await asyncio.to_thread(devservices.restart_kafka, private_kafka)
        publisher = gw.app.state.components.publisher
        assert await publisher.wait_drained(60)
        await _load(url, 20, ok)
    try:
        assert len(ok) == 100, "the gateway kept answering while Kafka was down"
        assert "audit_spool" in spooled["checks"]
        events = await read_events(restarted.address, settings.topic_audit, len(ok))
        by_request = audit_ids_by_request(events)
        assert all(len(by_request[rid]) == 1 for rid in ok), "a 2xx without exactly one event"
    finally:
        await asyncio.to_thread(devservices.stop, restarted)


async def test_gateway_sigkill_mid_load_then_restart_on_same_spool(
    tmp_path: Path, upstream: UpstreamServer, private_kafka: RunningService, unique: str
) -> None:
    """While Kafka is down the gateway answers from its fsynced spool; SIGKILL it
    mid-load, restart it on the same data dir once Kafka is back: every 2xx request
    has exactly one audit event."""
    env = {"RAGWARD_JWT_SECRET": TEST_SECRET, "RAGWARD_RAG_CORE_URL": upstream.url,
           "RAGWARD_KAFKA_BOOTSTRAP": private_kafka.address,
           "RAGWARD_TOPIC_AUDIT": f"audit-{unique}", "RAGWARD_TOPIC_USAGE": f"usage-{unique}",
           "RAGWARD_KAFKA_ACK_TIMEOUT_S": "0.5", "RAGWARD_DATA_DIR": str(tmp_path / "data"),
           "RAGWARD_LOG_LEVEL": "warning"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ok: list[str] = []
    with gateway_process(env, port, tmp_path / "gw1.log") as first:
        await wait_healthy(url, first, tmp_path / "gw1.log")
        await _load(url, 20, ok)
        await asyncio.to_thread(devservices.stop, private_kafka, keep_data=True)
        load = asyncio.create_task(_load(url, 400, ok))
        async with asyncio.timeout(60):
            while len(ok) < 60:  # well into the spooled part
                await asyncio.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        await load
    answered_before_kill = len(ok)
    restarted = await asyncio.to_thread(devservices.restart_kafka, private_kafka)
    try:
        with gateway_process(env, port, tmp_path / "gw2.log") as second:
            await wait_healthy(url, second, tmp_path / "gw2.log")
            events = await read_events(restarted.address, f"audit-{unique}",
                                       answered_before_kill, timeout=60)
        by_request = audit_ids_by_request(events)
        missing = [rid for rid in ok if len(by_request.get(rid, ())) != 1]
        assert answered_before_kill >= 60
        assert missing == [], f"{len(missing)} answered requests without exactly one event"
    finally:
        await asyncio.to_thread(devservices.stop, restarted)
