"""Helpers for the audit tests: events, records, a store per backend, Kafka plumbing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ragward.settings import Settings, load_settings
from telemetry.audit_store import AuditBackend, open_backend
from telemetry.bus import EventBus, Record, Subscription
from telemetry.configuration import audit_store_config, make_bus
from telemetry.events import AuditEvent, now_rfc3339
from tests.conftest import TEST_SECRET
from tests.postgres import fresh_database
from tests.signing_support import sign

TENANTS = ("acme", "globex", "initech")


def make_event(
    i: int, *, tenant: str | None = None, ts: str | None = None, **fields: Any
) -> AuditEvent:
    values: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "request_id": f"req-{i:06d}",
        "ts": ts or now_rfc3339(),
        "tenant": tenant or TENANTS[i % len(TENANTS)],
        "subject": f"user-{i % 5}",
        "roles": ["reader"],
        "method": "POST",
        "route": "/v1/query",
        "action": "query",
        "index": "default",
        "client_addr": f"203.0.113.{i % 250}",
        "user_agent": "pytest/1",
        "status": 200,
        "decision": "allow",
        "latency_ms": 1.5 + i,
        "question_hmac": ["ab" * 32],
        "questions_redacted": ["mail <EMAIL_1>"],
        "redactions": {"EMAIL": 1},
    }
    values.update(fields)
    return AuditEvent(**values)


def as_records(
    events: Sequence[AuditEvent], partitions: int = 3, topic: str = "audit", start_offset: int = 0
) -> list[Record]:
    """Records as Kafka would deliver them: round-robin partitions, offsets per partition."""
    next_offset = [start_offset] * partitions
    out = []
    for i, event in enumerate(events):
        p = i % partitions
        out.append(
            Record(
                topic,
                p,
                next_offset[p],
                event.tenant.encode(),
                sign(event),
                1_700_000_000_000 + i,
            )
        )
        next_offset[p] += 1
    return out


def verifying(settings: Settings, bus: EventBus | None = None) -> dict[str, Any]:
    """An AuditConsumer's verification arguments: the session's key set, dead letters to
    ``settings.topic_dead_letter`` on ``bus`` (an in-process bus by default)."""
    from telemetry.event_keys import verifier_from_settings
    from telemetry.memory_bus import MemoryBus

    return {"verifier": verifier_from_settings(settings),
            "dead_letters": (bus or MemoryBus()).publisher(),
            "dead_letter_topic": settings.topic_dead_letter}


def doc_verifier() -> str:
    """The outside verifier printed in docs/audit.md (tests run it on exports)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "audit.md").read_text("utf-8")
    match = re.search(r"```python\n(# verify_audit_export\.py.*?)```", text, re.S)
    assert match, "docs/audit.md has the outside verifier"
    return match.group(1)


def settings_for(tmp_path: Path, target: str | None, **overrides: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        jwt_secret=TEST_SECRET,
        audit_dsn=target if target and target.startswith("postgresql") else None,
        **overrides,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def audit_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None for the default SQLite store, or the DSN of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    dsn: str = request.getfixturevalue("postgres_dsn")
    return fresh_database(dsn)


@pytest.fixture
def audit_settings(tmp_path: Path, audit_target: str | None) -> Settings:
    return settings_for(tmp_path, audit_target, audit_checkpoint_every=10)


@pytest.fixture
def backend(audit_settings: Settings) -> Iterator[AuditBackend]:
    b = open_backend(audit_store_config(audit_settings))
    try:
        yield b
    finally:
        b.close()


def raw_execute(backend: AuditBackend, sql: str, params: Sequence[Any] = ()) -> None:
    """Tamper with the store behind its back (what an attacker with DB access does);
    ``sql`` marks its parameters with ``?`` whatever the database."""
    conn = backend.conn()
    conn.execute(sql.replace("?", backend.sql.mark), params)
    if backend.placeholder == "?":
        conn.commit()


# ---------------------------------------------------------------- Kafka


async def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(
    bootstrap: str, topic: str, events: Sequence[AuditEvent], timestamp_ms: int | None = None
) -> list[tuple[int, int]]:
    """Publish events keyed by tenant (as the gateway does); return (partition, offset) each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, sign(e), key=e.tenant.encode(), timestamp_ms=timestamp_ms)
            for e in events
        ]
        metas = [await f for f in futures]
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in metas]


def subscribe(settings: Settings, group: str) -> Subscription:
    """A member of ``group`` on the audit topic, through the real Kafka bus."""
    return make_bus(settings).subscribe([settings.topic_audit], group, from_beginning=True)
