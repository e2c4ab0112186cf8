"""The audit store on SQLite and on a real PostgreSQL: chain, idempotence, tamper
detection, checkpoints and retention, keyset queries, export, async use."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from ragward.errors import BadRequest, ValidationFailed
from ragward.settings import Settings, load_settings
from telemetry.audit_chain import GENESIS_HASH, canonical_json, chain_hash
from telemetry.audit_record import parse_ts_us
from telemetry.audit_store import (
    AuditBackend,
    AuditQuery,
    AuditStore,
    encode_cursor,
    open_backend,
)
from telemetry.bus import Record
from telemetry.configuration import audit_store_config
from telemetry.event_keys import key_set_from_settings
from telemetry.events import encode
from tests import audit_support
from tests.audit_support import as_records, make_event, raw_execute

# fixtures: a store per backend (SQLite, PostgreSQL)
audit_target = audit_support.audit_target
audit_settings = audit_support.audit_settings
backend = audit_support.backend

REPO = Path(__file__).resolve().parents[2]


def _fill(backend: AuditBackend, n: int = 60) -> list[Record]:
    records = as_records([make_event(i) for i in range(n)])
    result = backend.append(records)
    assert result.written == n
    return records


def test_batch_is_chained_per_partition_and_verifies(backend: AuditBackend) -> None:
    """N events become N records, one chain per partition starting from the zero hash."""
    _fill(backend, 60)
    assert backend.count() == 60
    heads = backend.heads()
    assert [(h.partition, h.offset, h.count) for h in heads] == [
        (0, 19, 20),
        (1, 19, 20),
        (2, 19, 20),
    ]
    lines = list(backend.export())
    first = next(line for line in lines if line["partition"] == 1)
    assert first["prev_hash"] == GENESIS_HASH
    assert first["hash"] == chain_hash(GENESIS_HASH, canonical_json(first["record"]))
    report = backend.verify()
    assert report.ok and report.records == 60


def test_stored_record_keeps_no_raw_question_and_truncates_the_address(
    backend: AuditBackend,
) -> None:
    """The redacted question text is not stored; the client address is cut to its /24."""
    event = make_event(7, client_addr="198.51.100.23")
    backend.append(as_records([event]))
    record = backend.query(AuditQuery(request_id=event.request_id)).records[0]
    assert "questions_redacted" not in record
    assert record["client_addr"] == "198.51.100.0/24"
    assert record["latency_us"] == 8500
    assert record["redactions"] == {"EMAIL": 1}
    assert (record["tenant"], record["subject"], record["roles"]) == (
        "globex",
        "user-2",
        ["reader"],
    )


def test_redelivered_batch_and_republished_event_are_skipped(backend: AuditBackend) -> None:
    """Same offsets again, or the same event_id at a new offset: no row, chain unchanged."""
    records = _fill(backend, 30)
    heads = backend.heads()
    again = backend.append(records)
    assert (again.written, again.duplicates) == (0, 30)
    republished = Record("audit", 0, 500, None, records[0].value, 0)
    assert backend.append([republished]).duplicates == 1
    assert backend.heads() == heads
    assert backend.count() == 30
    assert backend.verify().ok


def test_changed_record_is_named(backend: AuditBackend) -> None:
    """Editing one stored record's JSON makes verify fail at that partition and offset."""
    _fill(backend)
    raw_execute(
        backend,
        "UPDATE audit_records SET record = REPLACE(record, '\"status\":200', "
        "'\"status\":500') WHERE kafka_partition = 1 AND kafka_offset = 7",
    )
    problems = backend.verify().problems
    assert [(p.partition, p.offset) for p in problems] == [(1, 7)]
    assert "altered" in problems[0].problem


def test_changed_index_column_is_named(backend: AuditBackend) -> None:
    """Editing only an indexed column (what queries filter on) is caught too."""
    _fill(backend)
    raw_execute(
        backend,
        "UPDATE audit_records SET tenant = 'other' WHERE kafka_partition = 2 AND kafka_offset = 3",
    )
    assert [(p.partition, p.offset) for p in backend.verify().problems] == [(2, 3)]


def test_deleted_middle_record_is_named(backend: AuditBackend) -> None:
    """Deleting a record breaks the next record's link; verify names the next one."""
    _fill(backend)
    raw_execute(backend, "DELETE FROM audit_records WHERE kafka_partition = 0 AND kafka_offset = 5")
    problems = backend.verify().problems
    assert [(p.partition, p.offset) for p in problems] == [(0, 6)]


def test_deleted_newest_records_are_caught_by_the_head(backend: AuditBackend) -> None:
    """Deleting the newest records leaves a consistent-looking chain; the head names them."""
    _fill(backend)
    raw_execute(
        backend, "DELETE FROM audit_records WHERE kafka_partition = 2 AND kafka_offset >= 18"
    )
    problems = backend.verify().problems
    assert [(p.partition, p.offset) for p in problems] == [(2, 19)]
    assert "deleted" in problems[0].problem


def test_inserted_record_is_named(backend: AuditBackend) -> None:
    """A forged record in an offset gap, correct own hash and columns, breaks the next link."""
    events = [make_event(i) for i in range(10)]
    backend.append([Record("audit", 0, 2 * i, None, encode(e), 0) for i, e in enumerate(events)])
    prev = next(r for r in backend.export() if r["offset"] == 4)
    forged = dict(prev["record"], offset=5, event_id="forged", request_id="forged")
    text = canonical_json(forged).decode()
    raw_execute(
        backend,
        "INSERT INTO audit_records VALUES (0, 5, ?, 'forged', ?, ?, ?, 'forged', ?, ?, ?,"
        " NULL, NULL, NULL)",
        (
            prev["count"] + 1,
            parse_ts_us(forged["ts"]),
            forged["tenant"],
            forged["subject"],
            text,
            prev["hash"],
            chain_hash(prev["hash"], text.encode()),
        ),
    )
    problems = backend.verify().problems
    assert [(p.partition, p.offset) for p in problems] == [(0, 6)]


def test_checkpoints_and_retention_keep_the_rest_verifiable(audit_settings: Settings) -> None:
    """Checkpoints every N; prune drops whole old segments; verify starts at the kept checkpoint."""
    b = open_backend(audit_store_config(audit_settings))
    try:
        old = [make_event(i, ts="2020-01-01T00:00:00Z") for i in range(45)]
        new = [make_event(i) for i in range(45, 60)]
        b.append(as_records(old + new, partitions=1))
        assert [(c.offset, c.count) for c in b.checkpoints()] == [
            (9, 10),
            (19, 20),
            (29, 30),
            (39, 40),
            (49, 50),
            (59, 60),
        ]
        deleted = b.prune()
        assert deleted == 40  # 4 whole segments; 40..44 stay (their segment holds new records)
        assert [c.offset for c in b.checkpoints()] == [39, 49, 59]
        report = b.verify()
        assert report.ok, report.problems
        assert report.partitions[0].anchor_offset == 39
        raw_execute(b, "DELETE FROM audit_records WHERE kafka_offset = 40")
        assert [(p.partition, p.offset) for p in b.verify().problems] == [(0, 41)]
    finally:
        b.close()


def test_pruning_the_whole_anchor_is_detected(audit_settings: Settings) -> None:
    """Dropping the oldest segment and its checkpoint fails verify at the first record left."""
    b = open_backend(audit_store_config(audit_settings))
    try:
        b.append(as_records([make_event(i) for i in range(30)], partitions=1))
        raw_execute(b, "DELETE FROM audit_records WHERE kafka_offset <= 9")
        raw_execute(b, "DELETE FROM audit_checkpoints WHERE kafka_offset = 9")
        assert [(p.partition, p.offset) for p in b.verify().problems] == [(0, 10)]
    finally:
        b.close()


def test_malformed_value_keeps_its_place_without_its_bytes(backend: AuditBackend) -> None:
    """A value that is not an AuditEvent becomes a marked record with the value's SHA-256."""
    backend.append([Record("audit", 0, 0, None, b'{"secret":"hunter2"}', 1_700_000_000_000)])
    record = backend.query(AuditQuery()).records[0]
    assert record["malformed"] is True and "hunter2" not in json.dumps(record)
    assert backend.verify().ok


def test_keyset_pages_cover_everything_once_newest_first(backend: AuditBackend) -> None:
    """Walking next_cursor returns every matching record exactly once, newest first."""
    events = [make_event(i, ts=f"2024-05-01T00:00:{i % 60:02d}.{i:06d}Z") for i in range(100)]
    backend.append(as_records(events))
    seen: list[tuple[str, int, int]] = []
    cursor = None
    while True:
        page = backend.query(AuditQuery(tenant="acme", limit=7, cursor=cursor))
        seen.extend((r["ts"], r["partition"], r["offset"]) for r in page.records)
        cursor = page.next_cursor
        if cursor is None:
            break
    acme = [e for e in events if e.tenant == "acme"]
    assert len(seen) == len(acme) == len(set(seen))
    assert [s[0] for s in seen] == sorted((s[0] for s in seen), reverse=True)
    window = backend.query(
        AuditQuery(since="2024-05-01T00:00:10Z", until="2024-05-01T00:00:20Z", limit=1000)
    )
    assert len(window.records) == 20 and window.next_cursor is None  # i = 10..19 and 70..79
    by_subject = backend.query(AuditQuery(subject="user-3", limit=1000)).records
    assert len(by_subject) == 20 and {r["subject"] for r in by_subject} == {"user-3"}


def test_bad_query_input_is_a_validation_error(backend: AuditBackend) -> None:
    """limit out of range, a non-time or inverted time range and a control character in a
    filter are 422s naming the field; a cursor the API did not issue is a 400."""
    for bad, field in (
        (AuditQuery(limit=1001), "limit"),
        (AuditQuery(since="yesterday"), "since"),
        (AuditQuery(since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z"), "since"),
        (AuditQuery(tenant="acme\x00"), "tenant"),
        (AuditQuery(subject="x" * 257), "subject"),
    ):
        with pytest.raises(ValidationFailed) as err:
            backend.query(bad)
        assert err.value.field == field
    for cursor in ("nonsense!", encode_cursor(2**63, 0, 0), encode_cursor(0, -1, 0),
                   base64.urlsafe_b64encode(b"[" * 5000).decode(), "A" * 300):
        with pytest.raises(BadRequest):
            backend.query(AuditQuery(cursor=cursor))


async def test_async_store_queries_while_writing(audit_settings: Settings) -> None:
    """The async face runs on its own threads: queries answer while batches are written."""
    store = AuditStore(open_backend(audit_store_config(audit_settings)))
    try:
        batches = [
            as_records([make_event(i) for i in range(k * 50, k * 50 + 50)], start_offset=k * 50)
            for k in range(6)
        ]
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        tick = asyncio.create_task(ticker())
        writes = [await store.append(b) for b in batches]
        page = await store.query(AuditQuery(limit=1000))
        tick.cancel()
        assert sum(w.written for w in writes) == 300 and len(page.records) == 300
        assert ticks > 0
        assert (await store.verify()).ok
    finally:
        await store.close()
        await store.close()  # idempotent


def _export_text(lines: Iterable[dict[str, Any]]) -> str:
    """An export as `ragward audit export` writes it: the session's key set, then the lines."""
    keys = key_set_from_settings(load_settings()).document()
    return "".join(json.dumps(line) + "\n" for line in [keys, *lines])


def test_export_verifies_with_the_documented_ten_lines(
    backend: AuditBackend, tmp_path: Path
) -> None:
    """The verifier printed in docs/audit.md accepts an export and rejects an edited one."""
    _fill(backend)
    script = tmp_path / "verify_audit_export.py"
    code = audit_support.doc_verifier()
    assert len([line for line in code.splitlines() if line.strip()]) <= 25
    script.write_text(code)
    export = tmp_path / "audit.jsonl"
    export.write_text(_export_text(backend.export()))
    ok = subprocess.run([sys.executable, str(script), str(export)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    heads = {h.partition: h.hash for h in backend.heads()}
    assert f"partition 2: head {heads[2]}" in ok.stdout
    lines = export.read_text().splitlines()
    edited = json.loads(lines[10])
    edited["record"]["subject"] = "someone-else"
    lines[10] = json.dumps(edited)
    export.write_text("\n".join(lines) + "\n")
    bad = subprocess.run([sys.executable, str(script), str(export)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert f"partition {edited['partition']} offset {edited['offset']}" in bad.stderr


def test_postgres_connection_killed_mid_life_is_replaced(postgres_dsn: str, tmp_path: Path) -> None:
    """A server-side disconnect fails one call; the next call reconnects and the chain holds."""
    import psycopg

    from tests.audit_support import settings_for
    from tests.postgres import fresh_database

    b = open_backend(audit_store_config(
        settings_for(tmp_path, fresh_database(postgres_dsn), audit_checkpoint_every=10)))
    try:
        b.append(as_records([make_event(i) for i in range(6)]))
        pid = b.conn().info.backend_pid
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        more = as_records([make_event(i) for i in range(6, 12)], start_offset=2)
        with pytest.raises(psycopg.OperationalError):
            b.append(more)
        assert b.append(more).written == 6
        assert b.verify().ok and b.count() == 12
    finally:
        b.close()


def test_time_bounded_export_is_a_contiguous_verifiable_piece(
    backend: AuditBackend, tmp_path: Path
) -> None:
    """export --since/--until gives, per partition, an unbroken run of the chain covering
    the window, which the documented verifier accepts."""
    events = [make_event(i, ts=f"2024-05-01T00:{i // 60:02d}:{i % 60:02d}Z") for i in range(90)]
    backend.append(as_records(events))
    lines = list(backend.export("2024-05-01T00:00:30Z", "2024-05-01T00:01:00Z"))
    assert {line["record"]["request_id"] for line in lines} == {
        f"req-{i:06d}" for i in range(30, 60)
    }
    for p in (0, 1, 2):
        offsets = [line["offset"] for line in lines if line["partition"] == p]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    export = tmp_path / "window.jsonl"
    export.write_text(_export_text(lines))
    script = tmp_path / "verify_audit_export.py"
    script.write_text(audit_support.doc_verifier())
    ok = subprocess.run([sys.executable, str(script), str(export)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_chat_outcomes_are_stored_chained_and_verify_inside_and_out(
    backend: AuditBackend, tmp_path: Path
) -> None:
    """Chat completion records keep their outcome (phase, outcome, finish reason, time to
    first token and duration in integer microseconds, tokens); `verify` and the outside
    verifier of docs/audit.md both accept them and catch an edited outcome."""
    from telemetry.events import ChatSummary

    events = [make_event(i, route="/v1/chat/completions", action="chat.completions",
                         chat=ChatSummary(streamed=True, phase="end" if i % 2 else "start",
                                          outcome="disconnected" if i % 2 else "open",
                                          finish_reason=None, ttft_ms=12.3456 + i,
                                          duration_ms=100.5, prompt_tokens=40,
                                          completion_tokens=i, total_tokens=40 + i))
              for i in range(12)]
    assert backend.append(as_records(events)).written == 12
    assert backend.verify().ok
    export = [line for line in backend.export()]
    stored = {line["record"]["request_id"]: line["record"] for line in export}
    chat = stored["req-000003"]["chat"]
    assert chat == {"streamed": True, "phase": "end", "outcome": "disconnected",
                    "finish_reason": None, "ttft_us": 15346, "duration_us": 100500,
                    "prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43}
    script = tmp_path / "verify_audit_export.py"
    script.write_text(audit_support.doc_verifier())
    path = tmp_path / "audit.jsonl"
    path.write_text(_export_text(export))
    ok = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    export[3]["record"]["chat"]["outcome"] = "completed"
    path.write_text(_export_text(export))
    bad = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True)
    assert bad.returncode != 0


def test_sqlite_page_cache_is_bounded_by_the_setting(tmp_path: Path) -> None:
    """The SQLite store's page cache is what ``RAGWARD_AUDIT_SQLITE_CACHE_MIB`` says (16 MiB
    by default, not 64) on every connection it opens (writer and reader threads alike),
    and a store written far past that bound holds no more than it in SQLite's own
    allocator: the audit consumer's memory stops growing there."""
    import ctypes
    import ctypes.util
    from concurrent.futures import ThreadPoolExecutor

    def cache_kib(backend: AuditBackend) -> int:
        pages: int = backend.conn().execute("PRAGMA cache_size").fetchone()[0]
        return pages  # negative: KiB

    default = open_backend(audit_store_config(load_settings(data_dir=tmp_path / "a")))
    assert cache_kib(default) == -16 * 1024
    default.close_thread()

    store = open_backend(audit_store_config(
        load_settings(data_dir=tmp_path / "b", audit_sqlite_cache_mib=1)))
    sqlite_lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
    sqlite_lib.sqlite3_memory_used.restype = ctypes.c_int64
    before = sqlite_lib.sqlite3_memory_used()
    records = as_records([make_event(i) for i in range(6000)])
    for start in range(0, len(records), 500):
        assert store.append(records[start:start + 500]).written == 500
    database = sum(p.stat().st_size for p in (tmp_path / "b").rglob("audit.db*"))
    assert database > 4 * 1024 * 1024  # what a cache without a bound would have kept
    assert sqlite_lib.sqlite3_memory_used() - before < 2 * 1024 * 1024
    with ThreadPoolExecutor(1) as other_thread:  # a second connection (the reader's)
        assert other_thread.submit(cache_kib, store).result() == -1024
        other_thread.submit(store.close_thread).result()
    assert cache_kib(store) == -1024
    store.close_thread()
