"""``GET /v1/audit`` reads an audit store through a plain async function.

The gateway knows only that function (``gateway.components.AuditReader``), never the
store: whoever composes the process (``ragward serve``, ``ragward gateway`` with
``RAGWARD_AUDIT_DSN``) opens the store and hands the reader over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telemetry.audit_store.query import AuditQuery
from telemetry.audit_store.store import AuditStore


def store_reader(store: AuditStore) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Filters in, ``{"records", "next_cursor"}`` out, newest first."""

    async def read(**filters: Any) -> dict[str, Any]:
        page = await store.query(AuditQuery(**filters))
        return {"records": page.records, "next_cursor": page.next_cursor}

    return read
