"""``RAGWARD_AUDIT_DSN`` reaches libpq whole: its ``sslmode`` (and every other parameter)
is passed through, not stripped. The test server speaks no TLS, so ``sslmode=require``
must fail with libpq's own TLS refusal and ``sslmode=disable`` must work."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ragward.settings import load_settings
from telemetry.audit_store import open_store
from telemetry.configuration import audit_store_config
from tests.conftest import TEST_SECRET
from tests.postgres import fresh_database


async def test_sslmode_in_the_audit_dsn_reaches_libpq(tmp_path: Path, postgres_dsn: str) -> None:
    """sslmode=require against a server without TLS fails with "does not support SSL"
    (so the parameter was honoured); sslmode=disable on the same server works."""
    dsn = fresh_database(postgres_dsn)
    required = open_store(audit_store_config(load_settings(
        data_dir=tmp_path, jwt_secret=TEST_SECRET, audit_dsn=f"{dsn}?sslmode=require")))
    try:
        with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
            await required.heads()
    finally:
        await required.close()
    disabled = open_store(audit_store_config(load_settings(
        data_dir=tmp_path, jwt_secret=TEST_SECRET, audit_dsn=f"{dsn}?sslmode=disable")))
    try:
        assert await disabled.heads() == []
    finally:
        await disabled.close()
