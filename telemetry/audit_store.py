"""The compliance audit store: hash-chained records in SQLite or PostgreSQL.

Two layers:

* :class:`AuditBackend` — synchronous, one SQL implementation for both databases
  (:mod:`telemetry.audit_sqlite`, :mod:`telemetry.audit_postgres` supply the
  connection and the few dialect differences). The CLI uses it directly.
* :class:`AuditStore` — the asynchronous face the consumer and the gateway use:
  every call runs on the backend's own threads (one writer, one reader, each
  with its own connection), so the event loop never blocks on the database.

Tables: ``audit_records`` (one row per record: partition, offset, chain count,
indexed columns, the canonical record text, prev_hash, hash), ``audit_chain_heads``
(per partition: last offset, hash, count) and ``audit_checkpoints`` (every
``audit_checkpoint_every`` records of a partition: offset, hash, count and the
newest record time up to there, which retention uses).

Invariants: a batch is written in one transaction; a record whose ``event_id``
is already stored, or whose offset is not after its partition's head, is skipped
and does not extend the chain; chain order is Kafka (partition, offset) order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from ragward.errors import BadRequest, ValidationFailed
from ragward.settings import Settings
from telemetry.audit_chain import (
    GENESIS_HASH,
    Anchor,
    ChainBreak,
    ChainChecker,
    canonical_json,
    chain_hash,
)
from telemetry.audit_record import (
    BuiltRecord,
    ClientAddressPolicy,
    build_record,
    parse_ts_us,
    record_columns,
)
from telemetry.bus import Record

MAX_LIMIT = 1000
MAX_FILTER_CHARS = 256
MAX_CURSOR_CHARS = 256
INT32, INT64 = 2**31, 2**63
_T = TypeVar("_T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_records (
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        chain_count BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        ts_us BIGINT NOT NULL,
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        request_id TEXT NOT NULL,
        record TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY (kafka_partition, kafka_offset)
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_records_event_id ON audit_records (event_id)",
    """CREATE INDEX IF NOT EXISTS audit_records_ts
        ON audit_records (ts_us, kafka_partition, kafka_offset)""",
    """CREATE INDEX IF NOT EXISTS audit_records_tenant
        ON audit_records (tenant, ts_us, kafka_partition, kafka_offset)""",
    """CREATE INDEX IF NOT EXISTS audit_records_subject
        ON audit_records (subject, ts_us, kafka_partition, kafka_offset)""",
    "CREATE INDEX IF NOT EXISTS audit_records_request_id ON audit_records (request_id)",
    """CREATE TABLE IF NOT EXISTS audit_chain_heads (
        kafka_partition INTEGER PRIMARY KEY,
        kafka_offset BIGINT NOT NULL,
        hash TEXT NOT NULL,
        chain_count BIGINT NOT NULL,
        max_ts_us BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS audit_checkpoints (
        kafka_partition INTEGER NOT NULL,
        kafka_offset BIGINT NOT NULL,
        hash TEXT NOT NULL,
        chain_count BIGINT NOT NULL,
        ts_us BIGINT NOT NULL,
        PRIMARY KEY (kafka_partition, kafka_offset)
    )""",
)

_INSERT_RECORD = (
    "INSERT INTO audit_records (kafka_partition, kafka_offset, chain_count, event_id, ts_us,"
    " tenant, subject, request_id, record, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_CHECKPOINT = (
    "INSERT INTO audit_checkpoints (kafka_partition, kafka_offset, hash, chain_count, ts_us)"
    " VALUES (?,?,?,?,?)"
)
_UPSERT_HEAD = (
    "INSERT INTO audit_chain_heads (kafka_partition, kafka_offset, hash, chain_count, max_ts_us)"
    " VALUES (?,?,?,?,?) ON CONFLICT (kafka_partition) DO UPDATE SET"
    " kafka_offset = excluded.kafka_offset, hash = excluded.hash,"
    " chain_count = excluded.chain_count, max_ts_us = excluded.max_ts_us"
)


# ---------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class ChainHead:
    partition: int
    offset: int
    hash: str
    count: int
    max_ts_us: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    partition: int
    offset: int
    hash: str
    count: int
    ts_us: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    written: int = 0
    duplicates: int = 0
    malformed: int = 0
    checkpoints: int = 0


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for :meth:`AuditStore.query`; ``since`` inclusive, ``until`` exclusive.

    Times are RFC 3339 strings or aware datetimes. ``cursor`` is the opaque
    ``next_cursor`` of the previous page (keyset pagination).
    """

    tenant: str | None = None
    subject: str | None = None
    request_id: str | None = None
    since: str | datetime | None = None
    until: str | datetime | None = None
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Records newest first (each the stored record plus its ``hash``)."""

    records: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(slots=True)
class PartitionReport:
    partition: int
    records: int
    head: ChainHead | None
    anchor_offset: int
    problem: ChainBreak | None = None


@dataclass(slots=True)
class VerifyReport:
    partitions: list[PartitionReport] = field(default_factory=list)
    records: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(p.problem is None for p in self.partitions)

    @property
    def problems(self) -> list[ChainBreak]:
        return [p.problem for p in self.partitions if p.problem is not None]


# ---------------------------------------------------------------- helpers


def _time_us(value: str | datetime | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return parse_ts_us(moment.isoformat())
    parsed = parse_ts_us(value)
    if parsed is None:
        raise ValidationFailed(f"{name} is not an RFC 3339 time", field=name)
    return parsed


def encode_cursor(ts_us: int, partition: int, offset: int) -> str:
    raw = json.dumps([ts_us, partition, offset], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int, int]:
    """The position a ``next_cursor`` names; anything else is a 400 (a malformed request).

    The cursor comes from the client: it is bounded in length before decoding, must
    be base64 of a JSON array of three integers, and each must fit the column it is
    compared with (a 64-bit time, a partition, an offset), or SQLite and PostgreSQL
    would fail on it.
    """
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("cursor too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_us, partition, offset = json.loads(raw)
        if not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (ts_us, partition, offset)
        ):
            raise ValueError("cursor parts are not integers")
        if not (abs(ts_us) < INT64 and 0 <= partition < INT32 and 0 <= offset < INT64):
            raise ValueError("cursor parts out of range")
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise BadRequest("cursor is not a cursor this API returned") from None
    return ts_us, partition, offset


def validate_query(filters: AuditQuery) -> tuple[int | None, int | None]:
    """The query's time bounds in microseconds, once every filter is known to be sane:
    a 422 naming the field otherwise, a 400 for a cursor this API did not issue."""
    if not 1 <= filters.limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    for name in ("tenant", "subject", "request_id"):
        value = getattr(filters, name)
        if value is not None and not (len(value) <= MAX_FILTER_CHARS and value.isprintable()):
            raise ValidationFailed(
                f"{name} must be at most {MAX_FILTER_CHARS} printable characters", field=name
            )
    since_us, until_us = _time_us(filters.since, "since"), _time_us(filters.until, "until")
    if since_us is not None and until_us is not None and since_us > until_us:
        raise ValidationFailed("since must not be later than until", field="since")
    if filters.cursor:
        decode_cursor(filters.cursor)
    return since_us, until_us


# ---------------------------------------------------------------- backend


class AuditBackend:
    """Synchronous store over a DB-API connection per thread; dialects override a few hooks."""

    placeholder = "?"
    for_update = ""
    integrity_error: type[Exception] = sqlite3.IntegrityError
    description = "audit store"

    def __init__(
        self, policy: ClientAddressPolicy, checkpoint_every: int, retention_days: int
    ) -> None:
        self.policy = policy
        self.checkpoint_every = checkpoint_every
        self.retention_days = retention_days
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()

    # -- dialect hooks -----------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def _begin_read(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def _lock_schema(self, conn: Any) -> None:
        """Keep other processes from creating the schema at the same time (if the
        database needs it: a write transaction already does in SQLite)."""

    def _create_schema(self, conn: Any) -> None:
        self._begin_write(conn)
        try:
            self._lock_schema(conn)
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn.executemany(self._sql(sql), rows)

    def _insert_records(self, conn: Any, rows: Sequence[Sequence[Any]]) -> None:
        self._executemany(conn, _INSERT_RECORD, rows)

    def _stream(
        self, conn: Any, sql: str, params: Sequence[Any]
    ) -> Generator[tuple[Any, ...], None, None]:
        cur = conn.execute(self._sql(sql), params)
        while rows := cur.fetchmany(2000):
            yield from rows

    # -- plumbing ----------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _is_broken(self, conn: Any) -> bool:
        """True when the connection cannot be used again (server restarted, network cut)."""
        return False

    def _rollback(self, conn: Any) -> None:
        with contextlib.suppress(Exception):  # a dead connection cannot roll back; it is replaced
            conn.execute("ROLLBACK")

    def conn(self) -> Any:
        """This thread's connection (made on first use, replaced once broken, schema ensured)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._is_broken(conn):
            self.close_thread()
            conn = None
        if conn is None:
            conn = self._connect()
            self._create_schema(conn)
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close_thread(self) -> None:
        """Close this thread's connection, if it has one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._all_lock:
                self._all.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Close this thread's connection."""
        self.close_thread()

    def _q(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(conn.execute(self._sql(sql), params).fetchall())

    # -- writing -----------------------------------------------------------------------
    def _prepare(self, records: Sequence[Record]) -> list[tuple[BuiltRecord, bytes]]:
        """Decode, apply the privacy policy and canonicalise: all that needs no chain state."""
        policy = self.policy
        out = []
        for r in records:
            built = build_record(r, policy)
            out.append((built, canonical_json(built.record)))
        return out

    def append(self, records: Sequence[Record]) -> AppendResult:
        """Chain and store a batch in ONE transaction; duplicates are skipped.

        (Preparing chunks on a helper thread while inserting was tried and was
        slower: the GIL hand-over after each row's insert stalls the writer.)
        """
        if not records:
            return AppendResult()
        ordered = sorted(records, key=lambda r: (r.partition, r.offset))
        return self._write(sorted({r.partition for r in ordered}), [self._prepare(ordered)])

    def append_built(self, built: Sequence[BuiltRecord]) -> AppendResult:
        """Chain and store records already built (``build_record``), in one transaction."""
        ordered = sorted(built, key=lambda b: (b.partition, b.offset))
        prepared = [(b, canonical_json(b.record)) for b in ordered]
        return self._write(sorted({b.partition for b in ordered}), [prepared])

    def _write(
        self, partitions: list[int], chunks: list[list[tuple[BuiltRecord, bytes]]]
    ) -> AppendResult:
        """One transaction. First optimistically, trusting the unique index on event_id to
        object (a re-published event at a new offset is rare); if it does, the batch is
        rolled back and redone checking every event_id first."""
        conn = self.conn()
        for check_ids in (False, True):
            self._begin_write(conn)
            try:
                result = self._append_in_tx(conn, partitions, chunks, check_ids)
                conn.execute("COMMIT")
            except self.integrity_error:
                self._rollback(conn)
                if check_ids:
                    raise
                continue
            except BaseException:
                self._rollback(conn)
                raise
            return result
        raise AssertionError("unreachable")

    def _existing_ids(self, conn: Any, ids: list[str]) -> set[str]:
        existing: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            existing.update(
                row[0]
                for row in self._q(
                    conn,
                    "SELECT event_id FROM audit_records WHERE event_id IN"  # noqa: S608 (placeholders only)
                    f" ({','.join('?' * len(chunk))})",
                    chunk,
                )
            )
        return existing

    def _append_in_tx(
        self,
        conn: Any,
        partitions: list[int],
        chunks: Iterable[list[tuple[BuiltRecord, bytes]]],
        check_ids: bool = True,
    ) -> AppendResult:
        marks = ",".join("?" * len(partitions))
        heads: dict[int, ChainHead] = {
            row[0]: ChainHead(*row)
            for row in self._q(
                conn,
                "SELECT kafka_partition, kafka_offset, hash, chain_count, max_ts_us"  # noqa: S608 (placeholders only)
                f" FROM audit_chain_heads WHERE kafka_partition IN ({marks}){self.for_update}",
                partitions,
            )
        }
        checkpoints: list[tuple[Any, ...]] = []
        changed: set[int] = set()
        written = duplicates = malformed = 0
        every = self.checkpoint_every
        seen: set[str] = set()
        for chunk in chunks:
            existing = (
                self._existing_ids(conn, [b.event_id for b, _ in chunk]) if check_ids else set()
            )
            rows: list[tuple[Any, ...]] = []
            for b, text in chunk:
                head = heads.get(b.partition)
                if head is None:
                    head = ChainHead(b.partition, -1, GENESIS_HASH, 0, 0)
                if b.offset <= head.offset or b.event_id in existing or b.event_id in seen:
                    duplicates += 1
                    continue
                seen.add(b.event_id)
                digest = chain_hash(head.hash, text)
                count = head.count + 1
                max_ts = max(head.max_ts_us, b.ts_us)
                rows.append(
                    (
                        b.partition,
                        b.offset,
                        count,
                        b.event_id,
                        b.ts_us,
                        b.tenant,
                        b.subject,
                        b.request_id,
                        text.decode("utf-8"),
                        head.hash,
                        digest,
                    )
                )
                heads[b.partition] = ChainHead(b.partition, b.offset, digest, count, max_ts)
                changed.add(b.partition)
                if count % every == 0:
                    checkpoints.append((b.partition, b.offset, digest, count, max_ts))
                if "malformed" in b.record:
                    malformed += 1
            if rows:
                self._insert_records(conn, rows)
                written += len(rows)
        if checkpoints:
            self._executemany(conn, _INSERT_CHECKPOINT, checkpoints)
        if changed:
            self._executemany(
                conn,
                _UPSERT_HEAD,
                [
                    (h.partition, h.offset, h.hash, h.count, h.max_ts_us)
                    for h in (heads[p] for p in sorted(changed))
                ],
            )
        return AppendResult(written, duplicates, malformed, len(checkpoints))

    def prune(self, now: datetime | float | None = None) -> int:
        """Delete whole checkpoint segments older than the retention; return records deleted.

        Per partition, the newest checkpoint whose segment (and everything before
        it) is older than the cut-off becomes the anchor: its records and all
        older records and checkpoints go, the anchor checkpoint stays, so the
        remaining chain verifies from its hash.
        """
        if now is None:
            now_s = time.time()
        elif isinstance(now, datetime):
            now_s = now.timestamp()
        else:
            now_s = float(now)
        cutoff_us = int((now_s - self.retention_days * 86_400) * 1_000_000)
        conn = self.conn()
        deleted = 0
        self._begin_write(conn)
        try:
            partitions = [
                r[0] for r in self._q(conn, "SELECT kafka_partition FROM audit_chain_heads")
            ]
            for p in partitions:
                found = self._q(
                    conn,
                    "SELECT kafka_offset FROM audit_checkpoints WHERE kafka_partition = ?"
                    " AND ts_us < ? ORDER BY kafka_offset DESC LIMIT 1",
                    (p, cutoff_us),
                )
                if not found:
                    continue
                anchor = found[0][0]
                cur = conn.execute(
                    self._sql(
                        "DELETE FROM audit_records WHERE kafka_partition = ? AND kafka_offset <= ?"
                    ),
                    (p, anchor),
                )
                deleted += max(cur.rowcount, 0)
                conn.execute(
                    self._sql(
                        "DELETE FROM audit_checkpoints"
                        " WHERE kafka_partition = ? AND kafka_offset < ?"
                    ),
                    (p, anchor),
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return deleted

    # -- reading -----------------------------------------------------------------------
    def heads(self) -> list[ChainHead]:
        return [
            ChainHead(*row)
            for row in self._q(
                self.conn(),
                "SELECT kafka_partition, kafka_offset, hash, chain_count, max_ts_us"
                " FROM audit_chain_heads ORDER BY kafka_partition",
            )
        ]

    def checkpoints(self) -> list[Checkpoint]:
        return [
            Checkpoint(*row)
            for row in self._q(
                self.conn(),
                "SELECT kafka_partition, kafka_offset, hash, chain_count, ts_us"
                " FROM audit_checkpoints ORDER BY kafka_partition, kafka_offset",
            )
        ]

    def count(self) -> int:
        return int(self._q(self.conn(), "SELECT COUNT(*) FROM audit_records")[0][0])

    def is_empty(self) -> bool:
        conn = self.conn()
        return not (
            self._q(conn, "SELECT 1 FROM audit_records LIMIT 1")
            or self._q(conn, "SELECT 1 FROM audit_chain_heads LIMIT 1")
        )

    def query(self, filters: AuditQuery) -> AuditPage:
        since_us, until_us = validate_query(filters)
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("tenant", filters.tenant),
            ("subject", filters.subject),
            ("request_id", filters.request_id),
        ):
            if value is not None and value != "":
                where.append(f"{column} = ?")
                params.append(value)
        if since_us is not None:
            where.append("ts_us >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("ts_us < ?")
            params.append(until_us)
        if filters.cursor:
            where.append("(ts_us, kafka_partition, kafka_offset) < (?, ?, ?)")
            params.extend(decode_cursor(filters.cursor))
        sql = (
            "SELECT ts_us, kafka_partition, kafka_offset, record, hash FROM audit_records"  # noqa: S608 (placeholders / fixed column names only)
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY ts_us DESC, kafka_partition DESC, kafka_offset DESC LIMIT ?"
        )
        params.append(filters.limit + 1)
        rows = self._q(self.conn(), sql, params)
        more = len(rows) > filters.limit
        rows = rows[: filters.limit]
        records = []
        for _ts, _p, _o, text, digest in rows:
            record = json.loads(text)
            record["hash"] = digest
            records.append(record)
        next_cursor = encode_cursor(*rows[-1][:3]) if more and rows else None
        return AuditPage(records, next_cursor)

    def _anchor(self, first_offset: int | None, checkpoints: list[Checkpoint]) -> Anchor:
        """The retained checkpoint right before the first stored record, else genesis."""
        anchor = Anchor.genesis()
        for cp in checkpoints:
            if (first_offset is not None and cp.offset < first_offset) or first_offset is None:
                anchor = Anchor(cp.offset, cp.hash, cp.count)
        return anchor

    def verify(self, progress: Any = None) -> VerifyReport:
        """Recompute every chain in one consistent snapshot; name each partition's first break."""
        started = time.perf_counter()
        conn = self.conn()
        report = VerifyReport()
        self._begin_read(conn)
        try:
            heads = {h.partition: h for h in self.heads()}
            cps: dict[int, list[Checkpoint]] = {}
            for cp in self.checkpoints():
                cps.setdefault(cp.partition, []).append(cp)
            partitions = sorted(
                set(heads)
                | {
                    r[0]
                    for r in self._q(conn, "SELECT DISTINCT kafka_partition FROM audit_records")
                }
                | set(cps)
            )
            for p in partitions:
                report.partitions.append(
                    self._verify_partition(conn, p, heads.get(p), cps.get(p, []), progress)
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        report.records = sum(p.records for p in report.partitions)
        report.seconds = time.perf_counter() - started
        return report

    def _verify_partition(
        self, conn: Any, p: int, head: ChainHead | None, cps: list[Checkpoint], progress: Any
    ) -> PartitionReport:
        first = self._q(
            conn, "SELECT MIN(kafka_offset) FROM audit_records WHERE kafka_partition = ?", (p,)
        )
        first_offset = first[0][0] if first and first[0][0] is not None else None
        anchor = self._anchor(first_offset, cps)
        checker = ChainChecker(p, anchor, [(c.offset, c.hash, c.count) for c in cps])
        rows = self._stream(
            conn,
            "SELECT kafka_offset, record, prev_hash, hash, chain_count, event_id, ts_us, tenant,"
            " subject, request_id FROM audit_records WHERE kafka_partition = ?"
            " ORDER BY kafka_offset",
            (p,),
        )
        with contextlib.closing(rows):  # close the server-side cursor now, also on a break
            n = self._check_rows(checker, rows, progress)
        if progress is not None:
            progress(n % 10_000)
        if head is None:
            if n:
                checker.fail(
                    first_offset if first_offset is not None else -1,
                    "records stored but the partition has no chain head",
                )
        else:
            checker.finish_against_head(head.offset, head.hash, head.count)
        return PartitionReport(p, n, head, anchor.offset, checker.problem)

    @staticmethod
    def _check_rows(checker: ChainChecker, rows: Iterator[tuple[Any, ...]], progress: Any) -> int:
        n = 0
        for offset, text, prev, digest, count, event_id, ts_us, tenant, subject, request_id in rows:
            n += 1
            if progress is not None and n % 10_000 == 0:
                progress(10_000)
            if not checker.feed(offset, text, prev, digest, count):
                break
            if record_columns(checker.last_record) != (
                event_id,
                ts_us,
                tenant,
                subject,
                request_id,
            ):
                checker.fail(offset, "indexed columns differ from the hashed record (row altered)")
                break
        return n

    def export(
        self, since: str | None = None, until: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Export lines: per partition, the contiguous offset range covering [since, until)."""
        since_us, until_us = _time_us(since, "since"), _time_us(until, "until")
        conn = self.conn()
        self._begin_read(conn)
        try:
            partitions = [
                r[0]
                for r in self._q(
                    conn,
                    "SELECT DISTINCT kafka_partition FROM audit_records ORDER BY kafka_partition",
                )
            ]
            for p in partitions:
                lo_sql, lo_params = (
                    "SELECT MIN(kafka_offset) FROM audit_records WHERE kafka_partition = ?",
                    [p],
                )
                hi_sql, hi_params = (
                    "SELECT MAX(kafka_offset) FROM audit_records WHERE kafka_partition = ?",
                    [p],
                )
                if since_us is not None:
                    lo_sql += " AND ts_us >= ?"
                    lo_params.append(since_us)
                if until_us is not None:
                    hi_sql += " AND ts_us < ?"
                    hi_params.append(until_us)
                lo = self._q(conn, lo_sql, lo_params)[0][0]
                hi = self._q(conn, hi_sql, hi_params)[0][0]
                if lo is None or hi is None or lo > hi:
                    continue
                for offset, count, text, prev, digest in self._stream(
                    conn,
                    "SELECT kafka_offset, chain_count, record, prev_hash, hash FROM audit_records"
                    " WHERE kafka_partition = ? AND kafka_offset BETWEEN ? AND ?"
                    " ORDER BY kafka_offset",
                    (p, lo, hi),
                ):
                    yield {
                        "partition": p,
                        "offset": offset,
                        "count": count,
                        "prev_hash": prev,
                        "hash": digest,
                        "record": json.loads(text),
                    }
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise


# ---------------------------------------------------------------- async facade


class AuditStore:
    """Async face of a backend: writes on one thread, reads on another."""

    def __init__(self, backend: AuditBackend) -> None:
        self.backend = backend
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="audit-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="audit-read")
        self._closed = False

    async def _run(self, pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def append(self, records: Sequence[Record]) -> AppendResult:
        result: AppendResult = await self._run(self._writer, self.backend.append, records)
        return result

    async def prune(self, now: datetime | float | None = None) -> int:
        deleted: int = await self._run(self._writer, self.backend.prune, now)
        return deleted

    async def query(self, filters: AuditQuery) -> AuditPage:
        """Records newest first, at most ``filters.limit`` (≤ 1000), and the next cursor."""
        validate_query(filters)  # bad input fails fast, without a thread hop
        page: AuditPage = await self._run(self._reader, self.backend.query, filters)
        return page

    async def heads(self) -> list[ChainHead]:
        heads: list[ChainHead] = await self._run(self._reader, self.backend.heads)
        return heads

    async def verify(self) -> VerifyReport:
        report: VerifyReport = await self._run(self._reader, self.backend.verify)
        return report

    async def is_empty(self) -> bool:
        empty: bool = await self._run(self._reader, self.backend.is_empty)
        return empty

    async def close(self) -> None:
        """Close both threads' connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._run(self._writer, self.backend.close_thread)
            await self._run(self._reader, self.backend.close_thread)
        finally:
            self._writer.shutdown(wait=True)
            self._reader.shutdown(wait=True)


# ---------------------------------------------------------------- construction


def default_sqlite_path(settings: Settings) -> Path:
    return settings.data_dir / "audit" / "audit.db"


def open_backend(settings: Settings, target: str | None = None) -> AuditBackend:
    """The configured backend, or ``target`` (a SQLite path or a postgresql:// DSN)."""
    policy = ClientAddressPolicy.from_settings(settings)
    args = (policy, settings.audit_checkpoint_every, settings.audit_retention_days)
    location = target if target is not None else settings.audit_dsn
    if location and location.startswith(("postgresql://", "postgres://", "host=", "dbname=")):
        from telemetry.audit_postgres import PostgresAuditBackend

        return PostgresAuditBackend(location, *args)
    from telemetry.audit_sqlite import SqliteAuditBackend

    path = Path(location) if location else default_sqlite_path(settings)
    return SqliteAuditBackend(path, *args)


def open_store(settings: Settings, target: str | None = None) -> AuditStore:
    """An :class:`AuditStore` for the app or consumer; close it with ``await store.close()``."""
    return AuditStore(open_backend(settings, target))
