"""The compliance audit store: hash-chained records in SQLite or PostgreSQL.

Two layers:

* :class:`AuditBackend` (:mod:`.backend`) — synchronous, one SQL implementation for
  both databases (:mod:`.sqlite`, :mod:`.postgres` supply the connection, the
  parameter marker and the few dialect differences; :mod:`.schema` the tables and
  statements). The CLI uses it directly.
* :class:`AuditStore` (:mod:`.store`) — the asynchronous face the consumer and the gateway use:
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

Queries, pages and cursors (what a caller may ask) live in :mod:`.query`; the
reports handed back in :mod:`.model`. This package imports nothing of the
gateway; psycopg is imported only when a PostgreSQL DSN is opened.
"""

from telemetry.audit_store.backend import AuditBackend
from telemetry.audit_store.model import (
    AppendResult,
    ChainHead,
    Checkpoint,
    PartitionReport,
    VerifyReport,
)
from telemetry.audit_store.query import (
    MAX_LIMIT,
    AuditPage,
    AuditQuery,
    decode_cursor,
    encode_cursor,
    validate_query,
)
from telemetry.audit_store.reader import store_reader
from telemetry.audit_store.schema import SCHEMA
from telemetry.audit_store.store import AuditStore, AuditStoreConfig, open_backend, open_store

__all__ = [
    "MAX_LIMIT",
    "SCHEMA",
    "AppendResult",
    "AuditBackend",
    "AuditPage",
    "AuditQuery",
    "AuditStore",
    "AuditStoreConfig",
    "ChainHead",
    "Checkpoint",
    "PartitionReport",
    "VerifyReport",
    "decode_cursor",
    "encode_cursor",
    "open_backend",
    "open_store",
    "store_reader",
    "validate_query",
]
