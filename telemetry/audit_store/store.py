"""The asynchronous face of the audit store, and how one is opened from its configuration."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from telemetry.audit_store.backend import AuditBackend
from telemetry.audit_store.model import AppendResult, ChainHead, VerifyReport
from telemetry.audit_store.query import AuditPage, AuditQuery, validate_query
from telemetry.bus import Record
from telemetry.client_address import ClientAddressPolicy


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


@dataclass(frozen=True, slots=True)
class AuditStoreConfig:
    """Where the audit log lives (a SQLite path or a PostgreSQL DSN), how client
    addresses are kept, how often a checkpoint is written, how long records stay and how
    much page cache a SQLite connection keeps."""

    location: str = field(repr=False)  # a DSN may carry a password
    client_address: ClientAddressPolicy
    checkpoint_every: int
    retention_days: int
    sqlite_cache_mib: int = 16


def open_backend(config: AuditStoreConfig) -> AuditBackend:
    """The backend ``config.location`` names."""
    args = (config.client_address, config.checkpoint_every, config.retention_days)
    if config.location.startswith(("postgresql://", "postgres://", "host=", "dbname=")):
        from telemetry.audit_store.postgres import PostgresAuditBackend

        return PostgresAuditBackend(config.location, *args)
    from telemetry.audit_store.sqlite import SqliteAuditBackend

    return SqliteAuditBackend(Path(config.location), *args, cache_mib=config.sqlite_cache_mib)


def open_store(config: AuditStoreConfig) -> AuditStore:
    """An :class:`AuditStore` for the app or consumer; close it with ``await store.close()``."""
    return AuditStore(open_backend(config))
