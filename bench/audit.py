"""Audit store figures: ingest events/s with the hash chain, verify records/s, replay records/s.

    .venv/bin/python -m bench.audit [--events 100000] [--replay-events 50000] [--no-replay]

Ingest: synthetic AuditEvents as Kafka records (3 partitions), written in
batches of 5000 through ``AuditBackend.append`` — decode, privacy policy,
canonical JSON, SHA-256 chain, dedupe check, one transaction per batch — into
SQLite (and PostgreSQL when ``RAGWARD_AUDIT_DSN`` is set). Baselines in the
same run: the CPU part alone (no database), and the same rows inserted with a
plain ``executemany`` (no chain, no dedupe). Target: ≥ 20,000 events/s on
SQLite. Replay needs Kafka: ``RAGWARD_KAFKA_BOOTSTRAP``, else one is started
with ragward.devservices (that takes ~10 s and is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tqdm import tqdm

from ragward.settings import load_settings
from telemetry.audit_chain import canonical_json, chain_hash
from telemetry.audit_record import build_record
from telemetry.audit_store import SCHEMA, AuditBackend, open_backend
from telemetry.bus import Record
from telemetry.client_address import ClientAddressPolicy
from telemetry.configuration import audit_store_config
from telemetry.events import AuditEvent, now_rfc3339
from telemetry.signing import EventSigner, EventVerifier, KeySet, PublicKey

BATCH = 5000  # the audit consumer's max_records per poll
TENANTS = [f"tenant-{i}" for i in range(20)]


SIGNER = EventSigner(Ed25519PrivateKey.generate(), "bench")  # signs as a gateway would


def make_values(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        out.append(
            SIGNER.sign(
                AuditEvent(
                    event_id=uuid.uuid4().hex,
                    request_id=uuid.uuid4().hex,
                    ts=now_rfc3339(),
                    tenant=TENANTS[i % len(TENANTS)],
                    subject=f"user-{i % 500}",
                    roles=["reader"],
                    method="POST",
                    route="/v1/query",
                    action="query",
                    index="default",
                    client_addr=f"203.0.{i % 256}.{i % 199}",
                    user_agent="python-httpx/0.27",
                    status=200,
                    decision="allow",
                    latency_ms=3.25 + (i % 100) / 7,
                    question_hmac=[uuid.uuid4().hex * 2],
                    questions_redacted=["what is <EMAIL_1>?"],
                    redactions={"EMAIL": 1},
                )
            )
        )
    return out


def as_records(values: list[bytes], partitions: int = 3) -> list[Record]:
    offsets = [0] * partitions
    records = []
    for i, value in enumerate(values):
        p = i % partitions
        records.append(
            Record("ragward.audit.v1", p, offsets[p], None, value, 1_700_000_000_000 + i)
        )
        offsets[p] += 1
    return records


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_cpu(records: list[Record]) -> float:
    policy = ClientAddressPolicy()
    started = time.perf_counter()
    prev = "00" * 32
    for r in records:
        built = build_record(r, policy)
        prev = chain_hash(prev, canonical_json(built.record))
    return len(records) / (time.perf_counter() - started)


def bench_ingest(
    backend: AuditBackend, records: list[Record], label: str, batch: int = BATCH
) -> float:
    latencies = []
    cpu = time.process_time()
    started = time.perf_counter()
    with tqdm(total=len(records), desc=f"ingest {label}", unit="ev", file=sys.stderr) as bar:
        for i in range(0, len(records), batch):
            t0 = time.perf_counter()
            backend.append(records[i : i + batch])
            latencies.append(time.perf_counter() - t0)
            bar.update(min(batch, len(records) - i))
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    rate = len(records) / elapsed
    print(
        f"  ingest {label}: {rate:,.0f} events/s with hashing ({len(records):,} events, "
        f"{elapsed:.2f} s wall; {len(records) / cpu:,.0f} events per CPU-second of this process); "
        f"batch of {batch}: median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {pct(latencies, 0.99) * 1000:.1f} ms"
    )
    return rate


def bench_plain_sqlite(path: Path, records: list[Record]) -> float:
    """Baseline: the same rows, pre-built, plain executemany into the same schema."""
    import sqlite3

    policy = ClientAddressPolicy()
    rows = []
    for r in records:
        b = build_record(r, policy)
        rows.append(
            (
                b.partition,
                b.offset,
                0,
                b.event_id,
                b.ts_us,
                b.tenant,
                b.subject,
                b.request_id,
                canonical_json(b.record).decode(),
                "",
                "",
                None,
                None,
                None,
            )
        )
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for statement in SCHEMA:
        conn.execute(statement)
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO audit_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows[i : i + BATCH]
        )
        conn.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - started)
    conn.close()
    return rate


def bench_verify(backend: AuditBackend, label: str) -> float:
    with tqdm(desc=f"verify {label}", unit="rec", file=sys.stderr) as bar:
        report = backend.verify(progress=bar.update)
    assert report.ok, report.problems
    rate = report.records / report.seconds
    print(
        f"  verify {label}: {rate:,.0f} records/s "
        f"({report.records:,} records, {report.seconds:.2f} s)"
    )
    return rate


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        compression_type="gzip",
    )
    await producer.start()
    try:
        pending = []
        with tqdm(total=len(values), desc="produce", unit="ev", file=sys.stderr) as bar:
            for i, value in enumerate(values):
                pending.append(
                    await producer.send(topic, value, key=TENANTS[i % len(TENANTS)].encode())
                )
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    bar.update(len(pending))
                    pending.clear()
            await asyncio.gather(*pending)
            bar.update(len(pending))
    finally:
        await producer.stop()


def bench_replay(values: list[bytes], workdir: Path) -> float:
    from ragward import devservices
    from telemetry.audit_replay import replay_topic

    bootstrap = os.environ.get("RAGWARD_KAFKA_BOOTSTRAP")
    service = None
    if not bootstrap:
        print(
            "  starting a local Kafka (ragward.devservices) for the replay figure ...",
            file=sys.stderr,
        )
        service = devservices.start_kafka()
        bootstrap = service.address
    try:
        topic = f"bench.audit.{uuid.uuid4().hex[:8]}"
        asyncio.run(produce(bootstrap, topic, values))
        settings = load_settings(
            data_dir=workdir / "replay", kafka_bootstrap=bootstrap, topic_audit=topic
        )
        backend = open_backend(audit_store_config(settings, str(workdir / "replay" / "audit.db")))
        try:
            verifier = EventVerifier(KeySet([PublicKey("bench", SIGNER.public_key)]))
            result = asyncio.run(replay_topic(bootstrap, topic, backend, verifier=verifier))
        finally:
            backend.close()
        rate = result.records / result.seconds
        print(
            f"  replay: {rate:,.0f} records/s from Kafka into SQLite ({result.records:,} records, "
            f"{result.seconds:.2f} s, {result.written:,} written)"
        )
        return rate
    finally:
        if service is not None:
            devservices.stop(service)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--replay-events", type=int, default=50_000)
    parser.add_argument("--no-replay", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ragward-bench-audit-"))
    print(f"generating {args.events:,} audit events ...", file=sys.stderr)
    values = make_values(args.events)
    records = as_records(values)
    load = os.getloadavg()[0]
    print(
        f"audit store (SQLite, WAL, synchronous=FULL, batches of 5000); {os.cpu_count()} cores, "
        f"load average {load:.1f} at start (figures are wall-clock unless stated)"
    )
    print(
        f"  baseline, CPU only (decode + policy + canonical JSON + SHA-256): "
        f"{bench_cpu(records):,.0f} events/s"
    )
    print(
        f"  baseline, plain executemany of pre-built rows (no chain, no dedupe): "
        f"{bench_plain_sqlite(workdir / 'plain.db', records):,.0f} events/s"
    )
    settings = load_settings(data_dir=workdir)
    backend = open_backend(audit_store_config(settings, str(workdir / "audit.db")))
    try:
        rate = bench_ingest(backend, records, "sqlite")
        print(f"  target >= 20,000 events/s: {'MET' if rate >= 20_000 else 'NOT MET'}")
        bench_verify(backend, "sqlite")
    finally:
        backend.close()
    small = open_backend(audit_store_config(settings, str(workdir / "audit-1000.db")))
    try:
        bench_ingest(small, records, "sqlite, batches of 1000", batch=1000)
    finally:
        small.close()
    if dsn := os.environ.get("RAGWARD_AUDIT_DSN"):
        pg = open_backend(audit_store_config(settings, dsn))
        try:
            if pg.is_empty():
                bench_ingest(pg, records, "postgresql")
                bench_verify(pg, "postgresql")
            else:
                print("  postgresql: RAGWARD_AUDIT_DSN database is not empty; skipped")
        finally:
            pg.close()
    if not args.no_replay:
        bench_replay(
            make_values(args.replay_events) if args.replay_events != args.events else values,
            workdir,
        )
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
