"""Audit queries: the filters a caller may give, a page of records, and the opaque cursor.

Everything here checks input that comes from a client (``GET /v1/audit``) or an
operator (``ragward audit query``) before any SQL runs.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ragward.errors import BadRequest, ValidationFailed
from telemetry.audit_record import parse_ts_us

MAX_LIMIT = 1000
MAX_FILTER_CHARS = 256
MAX_CURSOR_CHARS = 256
INT32, INT64 = 2**31, 2**63


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


def time_us(value: str | datetime | None, name: str) -> int | None:
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
    since_us, until_us = time_us(filters.since, "since"), time_us(filters.until, "until")
    if since_us is not None and until_us is not None and since_us > until_us:
        raise ValidationFailed("since must not be later than until", field="since")
    if filters.cursor:
        decode_cursor(filters.cursor)
    return since_us, until_us
