"""The synchronous audit store: one SQL implementation over a DB-API connection per thread.

A dialect (:mod:`.sqlite`, :mod:`.postgres`) supplies the connection, its
parameter marker, its integrity error and the few transaction statements that
differ; everything else is written once here.

Why one module over 500 lines: it is one class, the SQL both dialects share. Its
write side (append under the chain, prune) and read side (query, verify, export)
use the same per-thread connection, snapshot transactions and row layout; the
pieces that stand alone already live beside it (:mod:`.schema`, :mod:`.query`,
:mod:`.signatures`, :mod:`telemetry.audit_chain`).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar

from telemetry.audit_chain import (
    GENESIS_HASH,
    Anchor,
    ChainChecker,
    canonical_json,
    chain_hash,
)
from telemetry.audit_record import (
    BuiltRecord,
    build_record,
    record_columns,
)
from telemetry.audit_store.model import (
    AppendResult,
    ChainHead,
    Checkpoint,
    PartitionReport,
    VerifyReport,
)
from telemetry.audit_store.query import (
    AuditPage,
    AuditQuery,
    decode_cursor,
    encode_cursor,
    time_us,
    validate_query,
)
from telemetry.audit_store.schema import ADDED_COLUMNS, SCHEMA, Statements
from telemetry.audit_store.signatures import SignatureChecker
from telemetry.bus import Record
from telemetry.client_address import ClientAddressPolicy
from telemetry.signing import KeySet, SignedParts, signed_parts

# A record ready to chain: what it is, its canonical bytes, (key_id, signature, signed view)
Prepared = tuple[BuiltRecord, bytes, tuple[str | None, str | None, str | None]]


class AuditBackend:
    """Synchronous store over a DB-API connection per thread; a dialect subclass names its
    driver's parameter marker and integrity error and opens the connection."""

    placeholder: ClassVar[str]  # the driver's parameter marker
    integrity_error: ClassVar[type[Exception]]  # what the unique index on event_id raises
    for_update: ClassVar[str] = ""  # row locks on the chain heads, where the database has them
    description = "audit store"

    def __init__(
        self, policy: ClientAddressPolicy, checkpoint_every: int, retention_days: int
    ) -> None:
        self.policy = policy
        self.checkpoint_every = checkpoint_every
        self.retention_days = retention_days
        self._local = threading.local()
        self.sql = Statements(self.placeholder)

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
            have = {d[0] for d in conn.execute("SELECT * FROM audit_records LIMIT 0").description}
            for column, kind in ADDED_COLUMNS:  # a store made by an older version
                if column not in have:
                    conn.execute(f"ALTER TABLE audit_records ADD COLUMN {column} {kind}")
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn.executemany(sql, rows)

    def _insert_records(self, conn: Any, rows: Sequence[Sequence[Any]]) -> None:
        self._executemany(conn, self.sql.insert_record, rows)

    def _stream(
        self, conn: Any, sql: str, params: Sequence[Any]
    ) -> Generator[tuple[Any, ...], None, None]:
        cur = conn.execute(sql, params)
        while rows := cur.fetchmany(2000):
            yield from rows

    # -- plumbing ----------------------------------------------------------------------
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
        return conn

    def close_thread(self) -> None:
        """Close this thread's connection, if it has one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Close this thread's connection."""
        self.close_thread()

    def _q(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(conn.execute(sql, params).fetchall())

    # -- writing -----------------------------------------------------------------------
    def _prepare(self, records: Sequence[Record]) -> list[Prepared]:
        """Decode, apply the privacy policy, canonicalise and split off the signature: all
        that needs no chain state. (The consumer verified the signatures before.)"""
        policy = self.policy
        out: list[Prepared] = []
        for r in records:
            built = build_record(r, policy)
            parts = signed_parts(r.value)
            signed = (parts.key_id, parts.signature, parts.view.decode("utf-8")) \
                if isinstance(parts, SignedParts) else (None, None, None)
            out.append((built, canonical_json(built.record), signed))
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

    def _write(
        self, partitions: list[int], chunks: list[list[Prepared]]
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
                    "SELECT event_id FROM audit_records WHERE event_id IN"
                    f" ({self.sql.marks(len(chunk))})",
                    chunk,
                )
            )
        return existing

    def _append_in_tx(
        self,
        conn: Any,
        partitions: list[int],
        chunks: Iterable[list[Prepared]],
        check_ids: bool = True,
    ) -> AppendResult:
        marks = self.sql.marks(len(partitions))
        heads: dict[int, ChainHead] = {
            row[0]: ChainHead(*row)
            for row in self._q(
                conn,
                "SELECT kafka_partition, kafka_offset, hash, chain_count, max_ts_us"
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
                self._existing_ids(conn, [p[0].event_id for p in chunk]) if check_ids else set()
            )
            rows: list[tuple[Any, ...]] = []
            for b, text, signed in chunk:
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
                        *signed,
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
            self._executemany(conn, self.sql.insert_checkpoint, checkpoints)
        if changed:
            self._executemany(
                conn,
                self.sql.upsert_head,
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
        m = self.sql.mark
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
                    f"SELECT kafka_offset FROM audit_checkpoints WHERE kafka_partition = {m}"
                    f" AND ts_us < {m} ORDER BY kafka_offset DESC LIMIT 1",
                    (p, cutoff_us),
                )
                if not found:
                    continue
                anchor = found[0][0]
                cur = conn.execute(
                    f"DELETE FROM audit_records WHERE kafka_partition = {m}"
                    f" AND kafka_offset <= {m}",
                    (p, anchor),
                )
                deleted += max(cur.rowcount, 0)
                conn.execute(
                    f"DELETE FROM audit_checkpoints WHERE kafka_partition = {m}"
                    f" AND kafka_offset < {m}",
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
        m = self.sql.mark
        since_us, until_us = validate_query(filters)
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("tenant", filters.tenant),
            ("subject", filters.subject),
            ("request_id", filters.request_id),
        ):
            if value is not None and value != "":
                where.append(f"{column} = {m}")
                params.append(value)
        if since_us is not None:
            where.append(f"ts_us >= {m}")
            params.append(since_us)
        if until_us is not None:
            where.append(f"ts_us < {m}")
            params.append(until_us)
        if filters.cursor:
            where.append(f"(ts_us, kafka_partition, kafka_offset) < ({m}, {m}, {m})")
            params.extend(decode_cursor(filters.cursor))
        sql = (
            "SELECT ts_us, kafka_partition, kafka_offset, record, hash FROM audit_records"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY ts_us DESC, kafka_partition DESC, kafka_offset DESC LIMIT {m}"
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

    def verify(self, progress: Any = None, keys: KeySet | None = None) -> VerifyReport:
        """Recompute every chain in one consistent snapshot; name each partition's first break.
        With ``keys``, check every record's signature too (:mod:`.signatures`)."""
        started = time.perf_counter()
        conn = self.conn()
        report = VerifyReport()
        signatures = SignatureChecker(keys) if keys is not None else None
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
                    self._verify_partition(conn, p, heads.get(p), cps.get(p, []), progress,
                                           signatures)
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        report.records = sum(p.records for p in report.partitions)
        report.seconds = time.perf_counter() - started
        report.signatures = signatures.report if signatures is not None else None
        return report

    def _verify_partition(
        self, conn: Any, p: int, head: ChainHead | None, cps: list[Checkpoint], progress: Any,
        signatures: SignatureChecker | None = None,
    ) -> PartitionReport:
        m = self.sql.mark
        first = self._q(
            conn, f"SELECT MIN(kafka_offset) FROM audit_records WHERE kafka_partition = {m}", (p,)
        )
        first_offset = first[0][0] if first and first[0][0] is not None else None
        anchor = self._anchor(first_offset, cps)
        checker = ChainChecker(p, anchor, [(c.offset, c.hash, c.count) for c in cps])
        rows = self._stream(
            conn,
            "SELECT kafka_offset, record, prev_hash, hash, chain_count, event_id, ts_us, tenant,"
            " subject, request_id, key_id, signature, signed_event FROM audit_records"
            f" WHERE kafka_partition = {m} ORDER BY kafka_offset",
            (p,),
        )
        with contextlib.closing(rows):  # close the server-side cursor now, also on a break
            n = self._check_rows(checker, rows, progress, signatures)
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
    def _check_rows(checker: ChainChecker, rows: Iterator[tuple[Any, ...]], progress: Any,
                    signatures: SignatureChecker | None = None) -> int:
        n = 0
        for (offset, text, prev, digest, count, event_id, ts_us, tenant, subject, request_id,
             key_id, signature, signed_event) in rows:
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
            if signatures is not None:
                signatures.feed(checker.partition, offset, checker.last_record, key_id,
                                signature, signed_event)
        return n

    def export(
        self, since: str | None = None, until: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Export lines: per partition, the contiguous offset range covering [since, until)."""
        m = self.sql.mark
        since_us, until_us = time_us(since, "since"), time_us(until, "until")
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
                    f"SELECT MIN(kafka_offset) FROM audit_records WHERE kafka_partition = {m}",
                    [p],
                )
                hi_sql, hi_params = (
                    f"SELECT MAX(kafka_offset) FROM audit_records WHERE kafka_partition = {m}",
                    [p],
                )
                if since_us is not None:
                    lo_sql += f" AND ts_us >= {m}"
                    lo_params.append(since_us)
                if until_us is not None:
                    hi_sql += f" AND ts_us < {m}"
                    hi_params.append(until_us)
                lo = self._q(conn, lo_sql, lo_params)[0][0]
                hi = self._q(conn, hi_sql, hi_params)[0][0]
                if lo is None or hi is None or lo > hi:
                    continue
                for offset, count, text, prev, digest, key_id, signature, signed in self._stream(
                    conn,
                    "SELECT kafka_offset, chain_count, record, prev_hash, hash, key_id, signature,"
                    f" signed_event FROM audit_records WHERE kafka_partition = {m}"
                    f" AND kafka_offset BETWEEN {m} AND {m} ORDER BY kafka_offset",
                    (p, lo, hi),
                ):
                    line: dict[str, Any] = {
                        "partition": p,
                        "offset": offset,
                        "count": count,
                        "prev_hash": prev,
                        "hash": digest,
                        "record": json.loads(text),
                    }
                    if key_id is not None:
                        line |= {"key_id": key_id, "signature": signature,
                                 "signed_event": signed}
                    yield line
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
