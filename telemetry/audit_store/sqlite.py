"""The audit store on SQLite: WAL, one connection per thread, batched transactions.

Writes take ``BEGIN IMMEDIATE`` so concurrent writers (two consumer processes on
one file) serialise instead of failing mid-batch; ``synchronous=FULL`` makes a
committed batch survive power loss, which matters because Kafka offsets are
committed right after it.
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
        self, path: Path, policy: ClientAddressPolicy, checkpoint_every: int, retention_days: int
    ) -> None:
        super().__init__(policy, checkpoint_every, retention_days)
        self.path = path
        self.description = f"sqlite:{path}"

    def _connect(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: the random-key indexes stay cached
        return conn

    def _begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
