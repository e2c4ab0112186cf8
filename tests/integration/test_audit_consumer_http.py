"""`ragward consumer audit`'s HTTP surface (telemetry.audit_consumer.create_audit_app):
/health, /ready that tells the truth (not started, store or poll failing, loop dead),
/metrics, 404 elsewhere, and a lifespan that stops the consumer and closes the store and
the bus. The last test runs the command itself against the real Kafka broker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CONTENT_TYPE_LATEST

from ragward import devservices
from ragward.settings import Settings, load_settings
from telemetry.audit_consumer import AuditConsumer, create_audit_app
from telemetry.audit_store import AppendResult, AuditStore, open_backend
from telemetry.bus import Record
from telemetry.configuration import audit_consumer_config, audit_store_config, kafka_config
from telemetry.events import AuditEvent, now_rfc3339
from telemetry.kafka_bus import KafkaBus
from telemetry.memory_bus import MemoryBus
from tests.audit_support import create_topic, make_event, produce
from tests.signing_support import sign

REPO = Path(__file__).resolve().parents[2]
GROUP = "audit-http"


class Store(AuditStore):
    """The real SQLite store; ``fail`` makes writes raise it, ``closed`` records close()."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(open_backend(audit_store_config(settings)))
        self.fail: Exception | None = None
        self.closed = False

    async def append(self, records: Sequence[Record]) -> AppendResult:
        if self.fail is not None:
            raise self.fail
        return await super().append(records)

    async def close(self) -> None:
        self.closed = True
        await super().close()


class ClosableBus(MemoryBus):
    """The in-process bus with the ``close()`` a transport may have (the app must call it)."""

    closed = False

    async def close(self) -> None:
        self.closed = True


async def publish(bus: MemoryBus, settings: Settings, count: int, start: int = 0) -> None:
    publisher = bus.publisher()
    await publisher.start()
    try:
        for i in range(start, start + count):
            event = AuditEvent(event_id=f"e{i}", request_id=f"r{i}", ts=now_rfc3339(),
                               tenant=f"t{i % 3}")
            await publisher.publish(settings.topic_audit, event.tenant, sign(event))
    finally:
        await publisher.stop()


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def ready_status(client: AsyncTestClient, status: int) -> None:  # type: ignore[type-arg]
    async def check() -> bool:
        return (await client.get("/ready")).status_code == status

    await until(check)


def parts(
    tmp_path: Path, clock: Callable[[], float] = time.time
) -> tuple[Settings, ClosableBus, Store, AuditConsumer]:
    settings = load_settings(data_dir=tmp_path)
    bus = ClosableBus()
    store = Store(settings)
    consumer = AuditConsumer.from_bus(audit_consumer_config(settings), bus, store, group=GROUP,
                                      poll_timeout_s=0.05,
                                      clock=clock)
    return settings, bus, store, consumer


async def test_serves_health_ready_metrics_and_nothing_else(tmp_path: Path) -> None:
    """Once started: /ready 200 with the group, /metrics counts what was stored, /health ok,
    any other path 404 (prometheus_client's server answered metrics on every path). On
    shutdown the consumer stops after committing and the store and the bus are closed."""
    settings, bus, store, consumer = parts(tmp_path)
    await publish(bus, settings, 7)
    async with AsyncTestClient(app=create_audit_app(consumer, bus=bus)) as client:
        await ready_status(client, 200)
        assert (await client.get("/ready")).json() == {"status": "ready", "group": GROUP}

        async def stored() -> bool:
            return consumer.written == 7

        await until(stored)
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"] == CONTENT_TYPE_LATEST  # charset once
        assert "ragward_audit_records_total 7.0" in metrics.text
        assert "ragward_audit_store_commit_seconds_count" in metrics.text
        health = await client.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        for path in ("/", "/nope", "/metrics/x", "/healthz"):
            assert (await client.get(path)).status_code == 404, path
        assert not store.closed and not bus.closed
    assert not consumer.running
    assert consumer.not_ready_reason() == "consumer not running"
    assert store.closed and bus.closed
    assert sum(bus.committed(GROUP).values()) == 7  # the batch was committed before stopping


async def test_not_ready_while_the_broker_is_unreachable(tmp_path: Path) -> None:
    """Before the consumer has started (Kafka refuses the connection, retried in the
    background) /ready is 503 and says why, while /health and /metrics answer."""
    settings = load_settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
    store = Store(settings)
    consumer = AuditConsumer.from_bus(audit_consumer_config(settings),
                                      KafkaBus(kafka_config(settings)), store,
                                      group=GROUP)
    async with AsyncTestClient(app=create_audit_app(consumer)) as client:
        first = await client.get("/ready")
        assert first.status_code == 503
        assert first.json()["status"] == "unavailable" and first.json()["reason"]

        async def refused() -> bool:
            return "start failing: KafkaConnectionError" in (await client.get("/ready")).text

        await until(refused)
        assert (await client.get("/ready")).status_code == 503
        assert (await client.get("/health")).status_code == 200
        assert "ragward_audit_records_total 0.0" in (await client.get("/metrics")).text
    assert store.closed


async def test_not_ready_while_the_store_fails_and_ready_again_after(tmp_path: Path) -> None:
    """A store whose writes raise (retried on the same batch) makes /ready 503 with the
    error; once writes succeed again /ready is 200 and every record is stored once."""
    settings, bus, store, consumer = parts(tmp_path)
    async with AsyncTestClient(app=create_audit_app(consumer, bus=bus)) as client:
        await ready_status(client, 200)
        store.fail = OSError("disk unavailable")
        await publish(bus, settings, 3)
        await ready_status(client, 503)
        body = (await client.get("/ready")).json()
        assert body == {"status": "unavailable",
                        "reason": "store write failing: OSError('disk unavailable')"}
        assert consumer.written == 0
        store.fail = None
        await ready_status(client, 200)

        async def stored() -> bool:
            return consumer.written == 3

        await until(stored)
    assert consumer.last_error == "OSError('disk unavailable')"


async def test_not_ready_when_the_subscription_is_gone(tmp_path: Path) -> None:
    """A subscription that stopped under the consumer (every poll raises) turns /ready 503."""
    _settings, bus, _store, consumer = parts(tmp_path)
    async with AsyncTestClient(app=create_audit_app(consumer, bus=bus)) as client:
        await ready_status(client, 200)
        await consumer.subscription.stop()
        await ready_status(client, 503)
        reason = (await client.get("/ready")).json()["reason"]
        assert reason == "poll failing: RuntimeError('subscription is not started')"


async def test_loop_death_turns_ready_503_and_is_reported(tmp_path: Path) -> None:
    """When the loop task ends with an exception (here its clock raises, outside any retry)
    /ready is 503 naming it, ``on_loop_exit`` gets it (the command then shuts the server
    down), and shutdown still closes the store and the bus."""
    broken: list[Exception] = []

    def clock() -> float:
        if broken:
            raise broken[0]
        return time.time()

    _settings, bus, store, consumer = parts(tmp_path, clock=clock)
    died: list[Exception] = []
    app = create_audit_app(consumer, bus=bus, on_loop_exit=died.append)
    async with AsyncTestClient(app=app) as client:
        await ready_status(client, 200)
        broken.append(ValueError("clock gone"))
        await ready_status(client, 503)
        assert (await client.get("/ready")).json() == {
            "status": "unavailable", "reason": "consumer loop died: ValueError('clock gone')"}
        assert not consumer.running

        async def reported() -> bool:
            return bool(died)

        await until(reported)
        assert died == broken
    assert store.closed and bus.closed


@pytest.mark.kafka
async def test_command_serves_http_on_kafka(tmp_path: Path, kafka_bootstrap: str,
                                            unique: str) -> None:
    """`ragward consumer audit --port P` on the real broker: /ready 200 with its group once it
    joined, /metrics counts the stored topic, unknown paths 404, and SIGTERM shuts it down
    gracefully (the consumer stops, the process exits)."""
    topic = f"test.audit.http.{unique}"
    group = f"http-{unique}"
    await create_topic(kafka_bootstrap, topic)
    await produce(kafka_bootstrap, topic, [make_event(i) for i in range(25)])
    port = devservices.free_port()
    env = {**os.environ, "RAGWARD_DATA_DIR": str(tmp_path / "data"),
           "RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap, "RAGWARD_TOPIC_AUDIT": topic,
           "RAGWARD_LOG_LEVEL": "info"}
    env.pop("RAGWARD_AUDIT_DSN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ragward.cli", "consumer", "audit", "--port", str(port),
        "--group", group, cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def all_stored() -> bool:
                assert proc.returncode is None, "the consumer exited"
                try:
                    metrics = await client.get("/metrics")
                except httpx.TransportError:
                    return False
                return "ragward_audit_records_total 25.0" in metrics.text

            await until(all_stored, within=40)
            ready = await client.get("/ready")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready", "group": group})
            assert (await client.get("/health")).json() == {"status": "ok"}
            assert (await client.get("/anything")).status_code == 404
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    logs = err.decode()
    # uvicorn re-raises SIGTERM after its graceful shutdown, hence -15 rather than 0
    assert proc.returncode in (0, -signal.SIGTERM), logs[-2000:]
    assert "audit_consumer_stopped" in logs, logs[-2000:]
