"""Naming and clean-up rules of the external vector stores (no server needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from rag_core.store import MANIFEST, VERSIONS, prune_versions
from rag_core.stores import StoreConfig, _sqlalchemy_url, collection_name
from ragward.errors import ConfigError


def test_collection_names_are_sql_safe_and_unique_per_index_and_version() -> None:
    """A table name is lower-case letters, digits and '_' (no quoting games with a
    hostile index name), fits PostgreSQL's 63 characters with the 'data_' prefix, and
    differs for another version or another index (even one differing only in case)."""
    version = "20261202T051346.342517378-9d3b58"
    names = {
        collection_name("handbook", version),
        collection_name("handbook", "20261202T051346.342517379-9d3b58"),
        collection_name("Handbook", version),
        collection_name('x"; DROP TABLE t; --', version),
    }
    assert len(names) == 4
    for name in names:
        assert re.fullmatch(r"[a-z0-9_]+", name)
        assert len("data_" + name) <= 63


def test_dsn_driver_is_set_for_sqlalchemy() -> None:
    """A plain libpq URL becomes the psycopg2 / asyncpg URLs PGVectorStore needs."""
    dsn = "postgresql://u:p@db:5432/rag?sslmode=require"
    assert _sqlalchemy_url(dsn, "psycopg2") == "postgresql+psycopg2://u:p@db:5432/rag?sslmode=require"
    assert _sqlalchemy_url("postgres://h/d", "asyncpg") == "postgresql+asyncpg://h/d"


def test_pruning_survives_a_store_that_cannot_drop(tmp_path: Path) -> None:
    """Pruning runs after the switch: a pgvector that cannot be reached leaves the old
    table behind with a warning naming the version, and the version's files still go
    (never an exception that would fail a publish which already succeeded)."""
    versions = tmp_path / "idx" / VERSIONS
    for version in ("v1", "v2", "v3"):
        (versions / version).mkdir(parents=True)
        (versions / version / MANIFEST).write_text(json.dumps(
            {"store": "pgvector", "collection": f"rw_x_{version}"}))
    (tmp_path / "idx" / "CURRENT").write_text("v3\n")
    unreachable = StoreConfig(kind="pgvector", pgvector_dsn="postgresql://127.0.0.1:1/none")
    with capture_logs() as logs:
        removed = prune_versions(tmp_path, "idx", stores=unreachable)
    assert removed == ["v1"]
    assert not (versions / "v1").exists()
    assert any(e["event"] == "version_vectors_not_dropped" and e["version"] == "v1"
               for e in logs)


def test_external_store_without_its_address_names_the_variable(tmp_path: Path) -> None:
    """Ingesting into pgvector with no DSN is a ConfigError naming RAGWARD_PGVECTOR_DSN."""
    from rag_core.stores import new_vector_store

    with pytest.raises(ConfigError, match="RAGWARD_PGVECTOR_DSN"):
        new_vector_store(StoreConfig(), "pgvector", "rw_x", 8)
