"""Where an index version's vectors live: embedded, PostgreSQL + pgvector, or Qdrant.

Chosen per index at ingest (``--store`` or ``RAGWARD_VECTOR_STORE``) and recorded
in the version's manifest (``store``, ``collection``), so a service reads each
index from wherever it was put, and one service can hold indexes in all three.

* ``embedded`` (default): :class:`~rag_core.vector_store.NumpyVectorStore`, one
  ``.npz`` inside the version directory; search is a matrix-vector product.
* ``pgvector``: LlamaIndex's ``PGVectorStore`` on ``RAGWARD_PGVECTOR_DSN``, one
  table per version (``data_rw_<index hash>_<version>``), HNSW cosine index. Ingest
  fills the table by binary COPY (:mod:`rag_core.pgvector_bulk`), then builds HNSW.
* ``qdrant``: LlamaIndex's ``QdrantVectorStore``, one collection per version, on
  ``RAGWARD_QDRANT_URL`` or, unset, Qdrant's local mode under ``data_dir/qdrant``
  (a file lock allows one process at a time: fine for tests and one-process
  ``ragward serve`` after ingest, not for ingest beside a running service).

One table or collection per *version* is what keeps the guarantees of the
embedded store: a re-ingest writes a complete new table while the old one
answers, ``CURRENT`` switches atomically, and pruning a version (or deleting the
index) drops its table. A tenant's index never shares a table with another
index, so isolation stays the ownership check of :mod:`rag_core.ownership`, not
a metadata filter that one forgotten argument would bypass.

The nodes (text, metadata), their order and the BM25 index stay in the version
directory in every case: the external store holds only what it is for.

An external store that cannot be reached, or whose database refuses a statement,
is one domain error wherever rag_core touches it (:func:`store_errors`):
:class:`~ragward.errors.DependencyUnavailable` naming the store and the driver's
exception *type*, never its message (a DSN, a password or a URL's credentials can
be in it). The CLI prints that line and exits 1; the HTTP layer answers 503.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import structlog
from llama_index.core.vector_stores.types import BasePydanticVectorStore, VectorStoreQuery

from rag_core.vector_store import NumpyVectorStore, top_k
from ragward.errors import ConfigError, DependencyUnavailable

log = structlog.get_logger(__name__)

StoreKind = Literal["embedded", "pgvector", "qdrant"]
ROWS_FILE = "rows.json"
# pgvector indexes at most 2,000 dimensions (HNSW on `vector`); wider vectors (the
# 8,192 hashed buckets) are searched exactly, by a sequential scan
PGVECTOR_HNSW_MAX_DIM = 2000
HNSW = {"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": 40,
        "hnsw_dist_method": "vector_cosine_ops"}


class DenseSearch(Protocol):
    blocking: bool  # True: top_k waits on a network round trip (run it off the event loop)

    def top_k(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, similarity) of the k rows nearest ``query``, best first."""
        ...


@dataclass(frozen=True)
class StoreConfig:
    """How to reach the external stores (the embedded one needs nothing)."""

    kind: StoreKind = "embedded"
    pgvector_dsn: str | None = field(default=None, repr=False)  # may carry a password
    qdrant_url: str | None = None
    qdrant_api_key: str | None = field(default=None, repr=False)
    qdrant_path: Path | None = None


def collection_name(index: str, version: str) -> str:
    """A table / collection name unique to one version of one index, safe in SQL."""
    digest = hashlib.sha256(index.encode("utf-8")).hexdigest()[:10]
    return f"rw_{digest}_{re.sub(r'[^a-z0-9]', '_', version.lower())}"


# -- the one boundary where a store's failures become a domain error ---------------
_Errors = tuple[type[BaseException], ...]


def _driver_errors(kind: str) -> tuple[_Errors, _Errors]:
    """(every error the store's clients raise, those that mean "cannot reach it"), imported
    only once a failure happened (the clients are an optional extra)."""
    if kind == "pgvector":
        import psycopg
        import sqlalchemy.exc

        unreachable: _Errors = (
            psycopg.OperationalError, sqlalchemy.exc.OperationalError, OSError)
        return (psycopg.Error, sqlalchemy.exc.SQLAlchemyError, *unreachable), unreachable
    if kind == "qdrant":
        import httpx
        from qdrant_client.http.exceptions import ApiException, ResponseHandlingException

        unreachable = (ResponseHandlingException, httpx.TransportError, OSError)
        return (ApiException, httpx.HTTPError, *unreachable), unreachable
    return (), ()


@contextlib.contextmanager
def store_errors(kind: str) -> Iterator[None]:
    """Run a call on the ``kind`` store; its client's errors leave as
    :class:`DependencyUnavailable` ("the pgvector store is unavailable
    (OperationalError)"), logged once with the store and the error type. The driver's
    message stays behind (``from None``): it can quote the DSN or the URL."""
    try:
        yield
    except Exception as exc:
        failures, unreachable = _driver_errors(kind)
        if not isinstance(exc, failures):
            raise
        what = "is unavailable" if isinstance(exc, unreachable) else "failed"
        log.warning("vector_store_failed", store=kind, exc_type=type(exc).__name__)
        raise DependencyUnavailable(
            f"the {kind} store {what} ({type(exc).__name__})") from None


# -- matrix (embedded) and external searches -------------------------------------
class MatrixSearch:
    blocking = False

    def __init__(self, store: NumpyVectorStore) -> None:
        self._matrix = store.matrix
        self._transposed = np.ascontiguousarray(self._matrix.T)

    def top_k(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        return top_k(self._matrix, query, k, self._transposed)


class ExternalSearch:
    """Nearest neighbours from a LlamaIndex vector store, mapped back to the version's rows."""

    blocking = True

    def __init__(self, store: BasePydanticVectorStore, ids: list[str], kind: str) -> None:
        self._store, self._kind = store, kind
        self._rows = {node_id: row for row, node_id in enumerate(ids)}

    def top_k(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        if not self._rows or k <= 0 or not np.any(query):
            return []
        with store_errors(self._kind):
            result = self._store.query(VectorStoreQuery(
                query_embedding=query.astype(float).tolist(), similarity_top_k=k))
        ids, scores = result.ids or [], result.similarities or []
        return [
            (self._rows[i], float(s)) for i, s in zip(ids, scores, strict=False) if i in self._rows
        ]


# -- opening, creating and dropping ----------------------------------------------
def _require(value: str | None, variable: str, kind: str) -> str:
    if not value:
        raise ConfigError(f"{variable}: required for indexes in the {kind} store")
    return value


@functools.cache
def _qdrant_client(url: str | None, api_key: str | None, path: str | None) -> Any:
    """One client per location and process: local mode locks its directory."""
    from qdrant_client import QdrantClient

    # no version check: it runs in a thread of its own and, with the server down, prints a
    # warning to stderr beside the one clean error the first call raises (store_errors)
    client = (QdrantClient(url=url, api_key=api_key, timeout=10, check_compatibility=False)
              if url else QdrantClient(path=path))
    _opened_qdrant.append(client)
    return client


def close_clients() -> None:
    """Close the Qdrant clients this process opened (local mode releases its lock)."""
    for client in list(_opened_qdrant):
        client.close()
    _opened_qdrant.clear()
    _qdrant_client.cache_clear()


_opened_qdrant: list[Any] = []


def _external_store(
    config: StoreConfig, kind: str, collection: str, dim: int, *, bulk: bool = False
) -> Any:
    try:
        with store_errors(kind):  # Qdrant's store asks the server about the collection
            return _open_external(config, kind, collection, dim, bulk=bulk)
    except ImportError:
        raise ConfigError(
            f"the {kind} store needs the `stores` extra: pip install 'ragward[stores]'"
        ) from None


def _open_external(
    config: StoreConfig, kind: str, collection: str, dim: int, *, bulk: bool
) -> Any:
    if kind == "pgvector":
        from llama_index.vector_stores.postgres import PGVectorStore

        dsn = _require(config.pgvector_dsn, "RAGWARD_PGVECTOR_DSN", kind)
        # a bulk load copies each batch in binary (rag_core.pgvector_bulk: psycopg 3) and
        # builds HNSW once the rows are in (finish_vectors); readers query through LlamaIndex
        if bulk:
            from sqlalchemy.pool import NullPool

            from rag_core.pgvector_bulk import BulkPGVectorStore

            # no pool: each batch's connection closes with it, nothing outlives the load
            return BulkPGVectorStore.from_params(
                connection_string=_sqlalchemy_url(dsn, "psycopg"),
                async_connection_string=_sqlalchemy_url(dsn, "asyncpg"),
                table_name=collection, embed_dim=dim,
                create_engine_kwargs={"poolclass": NullPool},
            )
        # a reader sets nothing up: ingest made the table and its HNSW index; LlamaIndex's
        # setup would log each failing step with the driver's message (it can quote the DSN)
        return PGVectorStore.from_params(
            connection_string=_sqlalchemy_url(dsn, "psycopg2"),
            async_connection_string=_sqlalchemy_url(dsn, "asyncpg"),
            table_name=collection,
            embed_dim=dim,
            hnsw_kwargs=dict(HNSW) if _hnsw(dim) else None,
            perform_setup=False,
            create_engine_kwargs={"pool_size": 2, "max_overflow": 4, "pool_pre_ping": True},
        )
    if kind == "qdrant":
        from llama_index.vector_stores.qdrant import QdrantVectorStore

        client = _qdrant_from(config)
        # a doc-id payload index speeds deletes by document on a server; local mode has none
        return QdrantVectorStore(collection_name=collection, client=client,
                                 index_doc_id=bool(config.qdrant_url))
    raise ConfigError(f"unknown vector store {kind!r}")


def _hnsw(dim: int) -> bool:
    return 0 < dim <= PGVECTOR_HNSW_MAX_DIM


def _sqlalchemy_url(dsn: str, driver: str) -> str:
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", f"postgresql+{driver}://", dsn)


def new_vector_store(
    config: StoreConfig, kind: StoreKind, collection: str, dim: int
) -> BasePydanticVectorStore:
    """An empty store for one new version's vectors, set up for a bulk load: call
    :func:`finish_vectors` once every row is in."""
    if kind == "embedded":
        return NumpyVectorStore()
    check_reachable(kind, config)
    store: BasePydanticVectorStore = _external_store(config, kind, collection, dim, bulk=True)
    return store


def finish_vectors(config: StoreConfig, kind: StoreKind, collection: str, dim: int) -> None:
    """After a bulk load: build the version's pgvector HNSW index in one pass, under the
    name LlamaIndex gives it (so a reader's ``CREATE INDEX IF NOT EXISTS`` finds it)."""
    if kind != "pgvector" or not _hnsw(dim):
        return
    table = f"data_{collection}"  # PGVectorStore's table for a name we made (SQL-safe)
    with store_errors(kind), _pg_connect(config) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")  # the graph of 100k 512-d rows fits
        conn.execute(
            f'CREATE INDEX IF NOT EXISTS "{table}_embedding_idx" ON public."{table}" '
            f"USING hnsw (embedding {HNSW['hnsw_dist_method']}) "
            f"WITH (m = {HNSW['hnsw_m']}, ef_construction = {HNSW['hnsw_ef_construction']})"
        )


def _pg_connect(config: StoreConfig) -> Any:
    import psycopg

    dsn = _require(config.pgvector_dsn, "RAGWARD_PGVECTOR_DSN", "pgvector")
    return psycopg.connect(re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn),
                           autocommit=True)


def write_rows(version_dir: Path, ids: list[str]) -> None:
    """The version's node ids in row order (an external store has no order of its own)."""
    (version_dir / ROWS_FILE).write_text(json.dumps(ids), encoding="utf-8")


def open_dense(
    version_dir: Path, manifest: dict[str, Any], config: StoreConfig | None
) -> tuple[BasePydanticVectorStore, DenseSearch, list[str]]:
    """The version's vector store, a search over it and its node ids in row order."""
    kind = store_of(manifest)
    if kind == "embedded":
        vectors = NumpyVectorStore.from_persist_dir(version_dir)
        return vectors, MatrixSearch(vectors), vectors.ids
    ids: list[str] = json.loads((version_dir / ROWS_FILE).read_text(encoding="utf-8"))
    store = _external_store(
        config or StoreConfig(), kind, str(manifest["collection"]), int(manifest.get("dim", 0))
    )
    return store, ExternalSearch(store, ids, kind), ids


def drop_vectors(manifest: dict[str, Any], config: StoreConfig | None) -> None:
    """Drop a version's table or collection (nothing to do for the embedded store)."""
    kind = store_of(manifest)
    collection = manifest.get("collection")
    if kind == "embedded" or not collection:
        return
    config = config or StoreConfig()
    with store_errors(kind):
        if kind == "pgvector":
            with _pg_connect(config) as conn:
                conn.execute(f'DROP TABLE IF EXISTS public."data_{collection}"')  # ours
        elif kind == "qdrant":
            client = _qdrant_from(config)
            if client.collection_exists(collection):
                client.delete_collection(collection)


def store_of(manifest: dict[str, Any]) -> str:
    """The store a version's manifest names (versions from before there was a choice:
    embedded)."""
    return str(manifest.get("store", "embedded"))


def check_reachable(kind: str, config: StoreConfig | None) -> None:
    """Raise :class:`DependencyUnavailable` unless the ``kind`` store answers now: asked
    before a step that cannot be undone half-way (deleting an index) or whose client
    would otherwise log the driver's message on its way to failing (LlamaIndex's
    pgvector setup), so an unreachable store fails it whole and cleanly."""
    config = config or StoreConfig()
    with store_errors(kind):
        if kind == "pgvector":
            with _pg_connect(config) as conn:
                conn.execute("SELECT 1")
        elif kind == "qdrant":
            _qdrant_from(config).get_collections()


def _qdrant_from(config: StoreConfig) -> Any:
    return _qdrant_client(config.qdrant_url, config.qdrant_api_key,
                          str(config.qdrant_path) if config.qdrant_path else None)
