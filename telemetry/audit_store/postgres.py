"""The audit store on PostgreSQL (``RAGWARD_AUDIT_DSN``), with psycopg 3.

One connection per store thread, autocommit off by explicit ``BEGIN``. Writers
lock the chain heads of the partitions in their batch (``FOR UPDATE``), so two
consumers that briefly share a partition during a rebalance serialise and the
second one skips what the first stored. Schema creation runs under an advisory
lock so consumers starting together do not race. ``verify`` and ``export`` read
in one REPEATABLE READ snapshot through a server-side cursor.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from typing import Any

import psycopg

from telemetry.audit_store.backend import AuditBackend
from telemetry.audit_store.schema import RECORD_COLUMNS
from telemetry.client_address import ClientAddressPolicy

_SCHEMA_LOCK = 0x72_61_67_77_61_75  # "ragwau": any constant shared by ragward processes
_cursor_names = itertools.count()
_COPY_RECORDS = f"COPY audit_records ({RECORD_COLUMNS}) FROM STDIN"


class PostgresAuditBackend(AuditBackend):
    placeholder = "%s"
    for_update = " FOR UPDATE"
    integrity_error = psycopg.errors.IntegrityError

    def __init__(
        self, dsn: str, policy: ClientAddressPolicy, checkpoint_every: int, retention_days: int
    ) -> None:
        super().__init__(policy, checkpoint_every, retention_days)
        self.dsn = dsn
        self.description = "postgresql"

    def _connect(self) -> Any:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def _is_broken(self, conn: Any) -> bool:
        return bool(conn.closed or conn.broken)

    def _begin_read(self, conn: Any) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _lock_schema(self, conn: Any) -> None:
        # CREATE ... IF NOT EXISTS races between processes in PostgreSQL: one at a time.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)

    def _insert_records(self, conn: Any, rows: Sequence[Sequence[Any]]) -> None:
        # COPY is several times faster than INSERTs; a duplicate event_id still raises
        # UniqueViolation, which sends the batch down the checking path.
        with conn.cursor() as cur, cur.copy(_COPY_RECORDS) as copy:
            for row in rows:
                copy.write_row(row)

    def _stream(
        self, conn: Any, sql: str, params: Sequence[Any]
    ) -> Generator[tuple[Any, ...], None, None]:
        with conn.cursor(name=f"audit_stream_{next(_cursor_names)}") as cur:
            cur.itersize = 5000
            cur.execute(sql, params)
            yield from cur
