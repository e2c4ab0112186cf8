"""The audit tables, and every fixed statement in a dialect's parameter style.

The SQL is the same on SQLite and PostgreSQL except for the parameter marker
(``?`` for sqlite3, ``%s`` for psycopg): :class:`Statements` spells each statement
with the marker its dialect names, so no statement is ever rewritten as a string.

:data:`ADDED_COLUMNS` are the columns added to ``audit_records`` after its first
release; opening an older store adds them (``ALTER TABLE ... ADD COLUMN``), and
the rows written before stay NULL there (records from before signing).
"""

from __future__ import annotations

from dataclasses import dataclass

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
        key_id TEXT,
        signature TEXT,
        signed_event TEXT,
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


# The gateway's signature of each record's event (telemetry.signing): the key id, the
# base64url signature and the exact bytes it covers (the event's canonical signed view).
ADDED_COLUMNS = (("key_id", "TEXT"), ("signature", "TEXT"), ("signed_event", "TEXT"))

RECORD_COLUMNS = (
    "kafka_partition, kafka_offset, chain_count, event_id, ts_us, tenant, subject, request_id,"
    " record, prev_hash, hash, key_id, signature, signed_event"
)


@dataclass(frozen=True, slots=True)
class Statements:
    """The fixed statements with ``mark`` as the parameter marker."""

    mark: str

    def marks(self, n: int) -> str:
        """``n`` markers separated by commas, for ``IN (...)`` and ``VALUES (...)``."""
        return ",".join([self.mark] * n)

    @property
    def insert_record(self) -> str:
        return f"INSERT INTO audit_records ({RECORD_COLUMNS}) VALUES ({self.marks(14)})"

    @property
    def insert_checkpoint(self) -> str:
        return (
            "INSERT INTO audit_checkpoints (kafka_partition, kafka_offset, hash, chain_count,"
            f" ts_us) VALUES ({self.marks(5)})"
        )

    @property
    def upsert_head(self) -> str:
        return (
            "INSERT INTO audit_chain_heads (kafka_partition, kafka_offset, hash, chain_count,"
            f" max_ts_us) VALUES ({self.marks(5)}) ON CONFLICT (kafka_partition) DO UPDATE SET"
            " kafka_offset = excluded.kafka_offset, hash = excluded.hash,"
            " chain_count = excluded.chain_count, max_ts_us = excluded.max_ts_us"
        )
