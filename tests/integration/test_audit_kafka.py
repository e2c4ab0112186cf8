"""The audit log against a real Kafka broker, on SQLite and on PostgreSQL: consume,
verify, tamper, redeliver, replay (from the beginning and from a time), and the
topic's values as an outside tool (Debian's kcat) sees them."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from prometheus_client import CollectorRegistry

from ragward.settings import Settings
from telemetry import audit_cli
from telemetry.audit_consumer import AuditConsumer
from telemetry.audit_store import AuditStore, open_backend, open_store
from telemetry.configuration import audit_store_config
from telemetry.events import encode, json_schemas
from tests import audit_support
from tests.audit_support import (
    create_topic,
    make_event,
    produce,
    raw_execute,
    settings_for,
    subscribe,
)
from tests.postgres import fresh_database
from tests.signing_support import sign

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]

audit_target = audit_support.audit_target


@pytest.fixture
def ksettings(
    tmp_path: Path, audit_target: str | None, kafka_bootstrap: str, unique: str
) -> Settings:
    return settings_for(
        tmp_path,
        audit_target,
        kafka_bootstrap=kafka_bootstrap,
        topic_audit=f"test.audit.{unique}",
        audit_checkpoint_every=10,
    )


@pytest.fixture
def fresh_target(request: pytest.FixtureRequest, tmp_path: Path, audit_target: str | None) -> str:
    """A second, empty store of the same kind (the replay target)."""
    if audit_target is None:
        return str(tmp_path / "replayed" / "audit.db")
    return fresh_database(request.getfixturevalue("postgres_dsn"))


async def _until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def _consume(
    settings: Settings,
    store: AuditStore,
    group: str,
    expect: int,
    registry: CollectorRegistry | None = None,
) -> AuditConsumer:
    consumer = AuditConsumer(
        store,
        subscribe(settings, group),
        topic=settings.topic_audit,
        registry=registry,
        poll_timeout_s=0.2,
        **audit_support.verifying(settings),
    )
    await consumer.start()
    try:
        await _until(lambda: _count_at_least(store, expect))
    finally:
        await consumer.stop()
    return consumer


async def _count_at_least(store: AuditStore, n: int) -> bool:
    return sum(h.count for h in await store.heads()) >= n


async def _produce_raw(settings: Settings, values: list[bytes]) -> None:
    """Records written straight to the audit topic, as any producer could."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.topic_audit, value, key=b"t0")
    finally:
        await producer.stop()


def _verify(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = audit_cli.verify(settings, argparse.Namespace())
    return code, capsys.readouterr().out


def _replay(
    settings: Settings, target: str, *, from_time: str | None = None, from_offset: int | None = None
) -> int:
    args = argparse.Namespace(from_offset=from_offset, from_time=from_time, store=target)
    return audit_cli.replay(settings, args)


async def test_events_become_records_verify_then_tamper(
    ksettings: Settings, unique: str, fresh_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """N events → N records and verify passes (chain and signatures); two forged events
    before them (unsigned; signed, then changed) are refused, not chained; replay from the
    beginning into an empty store refuses the same two and gives identical heads; changing
    or deleting one record makes verify fail and name it."""
    n = 90
    await create_topic(ksettings.kafka_bootstrap or "", ksettings.topic_audit)
    tampered = json.loads(sign(make_event(1001)))
    tampered["status"] = 204
    await _produce_raw(ksettings, [encode(make_event(1000)), json.dumps(tampered).encode()])
    positions = await produce(
        ksettings.kafka_bootstrap or "", ksettings.topic_audit, [make_event(i) for i in range(n)]
    )
    registry = CollectorRegistry()
    store = open_store(audit_store_config(ksettings))
    try:
        consumer = await _consume(ksettings, store, f"audit-{unique}", n, registry)
        heads = await store.heads()
    finally:
        await store.close()
    assert sum(h.count for h in heads) == n
    assert consumer.rejected == 2
    for reason in ("unsigned", "bad_signature"):
        assert registry.get_sample_value("ragward_events_rejected_total", {
            "topic": ksettings.topic_audit, "reason": reason}) == 1
    assert registry.get_sample_value("ragward_audit_records_total") == n
    assert registry.get_sample_value("ragward_audit_store_commit_seconds_count") >= 1
    code, out = _verify(ksettings, capsys)
    assert code == 0 and f"verified {n} records" in out

    # replay from the beginning into an empty store: the same refusals, identical chain heads
    capsys.readouterr()
    assert await asyncio.to_thread(_replay, ksettings, fresh_target) == 0
    out = capsys.readouterr().out
    assert "2 refused: signature" in out and "refused 1 records: bad_signature" in out
    replayed = open_backend(audit_store_config(ksettings, fresh_target))
    try:
        assert replayed.heads() == heads
    finally:
        replayed.close()

    # change one record, then delete another: verify names each
    p, o = positions[17]
    backend = open_backend(audit_store_config(ksettings))
    try:
        raw_execute(
            backend,
            "UPDATE audit_records SET record = REPLACE(record, '\"allow\"', "
            "'\"deny\"') WHERE kafka_partition = ? AND kafka_offset = ?",
            (p, o),
        )
        code, out = _verify(ksettings, capsys)
        assert code == 1 and f"BROKEN partition {p} offset {o}: hash does not match" in out
        raw_execute(
            backend,
            "DELETE FROM audit_records WHERE kafka_partition = ? AND kafka_offset = ?",
            (p, o),
        )
        code, out = _verify(ksettings, capsys)
        assert code == 1 and f"BROKEN partition {p} offset {o + 1}: prev_hash does not match" in out
    finally:
        backend.close()


async def test_redelivery_after_restart_before_commit_adds_nothing(
    ksettings: Settings, unique: str
) -> None:
    """A consumer that stored a batch but died before committing: the next one gets the
    batch again and skips it — no duplicate, chain unchanged."""
    n = 40
    bootstrap = ksettings.kafka_bootstrap or ""
    await create_topic(bootstrap, ksettings.topic_audit)
    await produce(bootstrap, ksettings.topic_audit, [make_event(i) for i in range(n)])
    group = f"audit-{unique}"
    store = open_store(audit_store_config(ksettings))
    try:
        first = subscribe(ksettings, group)
        await first.start()
        stored = 0
        deadline = time.monotonic() + 30
        while stored < n and time.monotonic() < deadline:
            stored += (await store.append(await first.poll(0.2, 1000))).written
        await first.stop()  # "crash": stored, never committed
        assert stored == n
        heads = await store.heads()

        second = await _consume_duplicates(ksettings, store, group, n)
        assert (second.written, second.duplicates) == (0, n)
        assert await store.heads() == heads
        assert (await store.verify()).ok
    finally:
        await store.close()


async def _consume_duplicates(
    settings: Settings, store: AuditStore, group: str, n: int
) -> AuditConsumer:
    consumer = AuditConsumer(
        store, subscribe(settings, group), topic=settings.topic_audit, poll_timeout_s=0.2,
        **audit_support.verifying(settings),
    )
    await consumer.start()
    try:

        async def seen_all() -> bool:
            return consumer.duplicates + consumer.written >= n

        await _until(seen_all)
    finally:
        await consumer.stop()
    return consumer


def test_replay_from_a_time_gives_exactly_the_later_records(
    ksettings: Settings, fresh_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replay --from-time T holds exactly the records with a Kafka time at or after T,
    refuses a non-empty target, and its chains verify."""
    bootstrap = ksettings.kafka_bootstrap or ""
    base = (int(time.time()) - 600) * 1000  # within the topic's retention
    early = [make_event(i) for i in range(30)]
    late = [make_event(i) for i in range(30, 55)]

    async def publish() -> None:
        await create_topic(bootstrap, ksettings.topic_audit)
        await produce(bootstrap, ksettings.topic_audit, early, timestamp_ms=base)
        await produce(bootstrap, ksettings.topic_audit, late, timestamp_ms=base + 60_000)

    asyncio.run(publish())
    split = datetime.fromtimestamp(base / 1000 + 30, tz=UTC).isoformat()
    assert _replay(ksettings, fresh_target, from_time=split) == 0
    out = capsys.readouterr().out
    assert "replayed 25 records (25 written" in out
    target = open_backend(audit_store_config(ksettings, fresh_target))
    try:
        ids = {line["record"]["event_id"] for line in target.export()}
        assert ids == {e.event_id for e in late}
        assert target.verify().ok
    finally:
        target.close()
    assert _replay(ksettings, fresh_target) == 1  # not empty: refused
    assert "already holds audit records" in capsys.readouterr().err


@pytest.mark.parametrize("audit_target", ["sqlite"], indirect=True)
def test_kcat_reads_values_that_match_the_published_schema(
    ksettings: Settings, unique: str
) -> None:
    """Debian's kcat consumes the audit topic; every value validates against AuditEvent's
    JSON Schema (telemetry.events.json_schemas, the one docs/events.md publishes)."""
    kcat = shutil.which("kcat") or "/usr/bin/kcat"
    if not os.path.exists(kcat):
        pytest.fail("kcat is not installed (deploy/install-system-deps.sh installs it)")
    bootstrap = ksettings.kafka_bootstrap or ""
    events = [
        make_event(i, decision=d, reason=None if d == "allow" else d, status=s)
        for i, (d, s) in enumerate(
            [("allow", 200), ("deny", 403), ("rate_limited", 429), ("invalid", 422), ("error", 502)]
            * 4
        )
    ]

    async def publish() -> None:
        await create_topic(bootstrap, ksettings.topic_audit)
        await produce(bootstrap, ksettings.topic_audit, events)

    asyncio.run(publish())
    out = subprocess.run(
        [
            kcat,
            "-b",
            bootstrap,
            "-t",
            ksettings.topic_audit,
            "-C",
            "-e",
            "-q",
            "-o",
            "beginning",
            "-f",
            "%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    values = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(values) == len(events)
    schema = json_schemas()["AuditEvent"]
    validator = jsonschema.Draft202012Validator(schema)
    for value in values:
        validator.validate(value)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**values[0], "decision": "maybe"})


def test_events_doc_publishes_the_same_audit_schema() -> None:
    """docs/events.md carries exactly the AuditEvent schema the code generates."""
    doc = REPO / "docs" / "events.md"
    schema = json_schemas()["AuditEvent"]
    wanted = [schema, schema.get("$defs", {}).get("AuditEvent")]  # type: ignore[union-attr]
    blocks = re.findall(r"```json\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    parsed = []
    for block in blocks:
        try:
            parsed.append(json.loads(block))
        except ValueError:
            continue
    assert any(
        p in wanted or (isinstance(p, dict) and p.get("AuditEvent") in wanted) for p in parsed
    ), "AuditEvent's schema in docs/events.md differs from json_schemas()"


@pytest.mark.parametrize("audit_target", ["sqlite"], indirect=True)
async def test_consumer_command_runs_until_sigterm(ksettings: Settings, unique: str) -> None:
    """`ragward consumer audit` stores the topic and exits 0 on SIGTERM."""
    bootstrap = ksettings.kafka_bootstrap or ""
    await create_topic(bootstrap, ksettings.topic_audit)
    await produce(bootstrap, ksettings.topic_audit, [make_event(i) for i in range(25)])
    env = {
        **os.environ,
        "RAGWARD_DATA_DIR": str(ksettings.data_dir),
        "RAGWARD_KAFKA_BOOTSTRAP": bootstrap,
        "RAGWARD_TOPIC_AUDIT": ksettings.topic_audit,
    }
    env.pop("RAGWARD_AUDIT_DSN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ragward.cli",
        "consumer",
        "audit",
        "--port",
        "0",
        "--group",
        f"cmd-{unique}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    backend = open_backend(audit_store_config(ksettings))
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.returncode is None:
            if sum(h.count for h in await asyncio.to_thread(backend.heads)) >= 25:
                break
            await asyncio.sleep(0.2)
        assert sum(h.count for h in await asyncio.to_thread(backend.heads)) == 25
    finally:
        await asyncio.to_thread(backend.close)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()[-2000:]
