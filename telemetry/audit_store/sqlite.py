"""The audit store on SQLite: WAL, one connection per thread, batched transactions.

Writes take ``BEGIN IMMEDIATE`` so concurrent writers (two consumer processes on
one file) serialise instead of failing mid-batch; ``synchronous=FULL`` makes a
committed batch survive power loss, which matters because Kafka offsets are
committed right after it.

The page cache is bounded by ``cache_mib`` per connection (``RAGWARD_AUDIT_SQLITE_CACHE_MIB``,
default 16; the store has two connections, writer and reader). The store is append-mostly:
new rows and the time-ordered indexes land on their last pages, which any cache keeps;
only the two random-key indexes (``event_id``, ``request_id``, about 100 bytes a record
together) are touched at random leaves. 16 MiB keeps them whole up to ~150,000 records;
past that a miss is a read from the operating system's page cache, which a larger SQLite
cache only postpones (64 MiB: until ~700,000 records) while making every audit consumer
that much larger. Figures: bench/README.md.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from telemetry.audit_store.backend import AuditBackend
from telemetry.client_address import ClientAddressPolicy


class SqliteAuditBackend(AuditBackend):
    placeholder = "?"
    integrity_error = sqlite3.IntegrityError

    def __init__(
        self,
        path: Path,
        policy: ClientAddressPolicy,
        checkpoint_every: int,
        retention_days: int,
        *,
        cache_mib: int = 16,
    ) -> None:
        super().__init__(policy, checkpoint_every, retention_days)
        if cache_mib < 1:
            raise ValueError(f"SQLite page cache must be at least 1 MiB, not {cache_mib}")
        self.path = path
        self.cache_mib = cache_mib
        self.description = f"sqlite:{path}"

    def _connect(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{self.cache_mib * 1024}")  # negative: in KiB
        return conn

    def _begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
