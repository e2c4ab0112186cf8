"""On-disk layout of persisted indexes, atomic publication, and in-memory snapshots.

::

    <data_dir>/indexes/<name>/
        CURRENT                  the live version id (replaced atomically)
        .lock                    serialises publishers of this index
        versions/<version>/      a LlamaIndex StorageContext (docstore.json,
                                 index_store.json, default__vector_store.npz for
                                 the embedded store, ...), bm25/ (the version's
                                 BM25 index, rag_core.lexical), sentences.npz
                                 (its chunks' sentence vectors, rag_core.rerank,
                                 USE-m3 versions only) and manifest.json
        versions/.tmp-<version>/ being written; never read

A publisher writes a complete version directory, fsyncs it, renames it into
``versions/`` and then replaces ``CURRENT`` with ``os.replace`` — so a reader
sees either the old or the new version, never half of one. Only the newest
``KEEP_VERSIONS`` versions are kept; a reader loads a version into memory in
well under a second and retries from ``CURRENT`` if its version vanished.

A version's vectors live where its manifest's ``store`` says
(:mod:`rag_core.stores`): in the directory (the embedded store, default), or in a
pgvector table / Qdrant collection named after the version — written completely
before ``CURRENT`` moves, dropped when the version is pruned or the index deleted.

An :class:`IndexSnapshot` is one version loaded into memory: the
``VectorStoreIndex``, its nodes, its BM25 index and a dense search over its
vectors — for the embedded store the row-normalised float32 matrix, so retrieval
is one matrix-vector product with no per-query docstore look-ups.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import BaseNode, MetadataMode

from rag_core.lexical import LexicalIndex
from rag_core.rerank import SentenceVectors
from rag_core.stores import (
    DenseSearch,
    StoreConfig,
    check_reachable,
    drop_vectors,
    open_dense,
    store_of,
    write_rows,
)
from rag_core.text import is_chinese
from ragward.errors import NotFound

log = structlog.get_logger(__name__)

CURRENT = "CURRENT"
VERSIONS = "versions"
MANIFEST = "manifest.json"
KEEP_VERSIONS = 2


def new_version_id() -> str:
    """Sortable by creation time, unique across processes."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
    return f"{stamp}.{now % 10**9:09d}-{uuid.uuid4().hex[:6]}"


def index_dir(root: Path, name: str) -> Path:
    return root / name


def read_current(root: Path, name: str) -> str | None:
    try:
        version = (index_dir(root, name) / CURRENT).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return version or None


def current_stamp(root: Path, name: str) -> tuple[int, int] | None:
    """(inode, mtime_ns) of CURRENT: changes whenever a new version is published."""
    try:
        st = (index_dir(root, name) / CURRENT).stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_ino, st.st_mtime_ns


def list_index_names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CURRENT).is_file())


def version_dir(root: Path, name: str, version: str) -> Path:
    return index_dir(root, name) / VERSIONS / version


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(path)


@contextlib.contextmanager
def _publish_lock(root: Path, name: str) -> Iterator[None]:
    base = index_dir(root, name)
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def persist_version(
    root: Path,
    name: str,
    index: VectorStoreIndex,
    manifest: dict[str, Any],
    lexical: LexicalIndex,
    *,
    sentences: SentenceVectors | None = None,
    version: str | None = None,
    stores: StoreConfig | None = None,
    rows: list[str] | None = None,
) -> str:
    """Write ``index`` (its vectors already in their store), ``lexical`` and the
    ``sentences`` vectors of its chunks as a new version of ``name``, make it current,
    prune old ones (their vectors too)."""
    version = version or new_version_id()
    versions = index_dir(root, name) / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    tmp = versions / f".tmp-{version}"
    try:
        index.storage_context.persist(persist_dir=str(tmp))
        lexical.save(tmp)
        if sentences is not None:
            sentences.save(tmp)
        if rows is not None:
            write_rows(tmp, rows)
        (tmp / MANIFEST).write_text(
            json.dumps(
                {**manifest, "version": version, "index": name}, ensure_ascii=False, indent=2
            ),
            encoding="utf-8",
        )
        _fsync_tree(tmp)
        with _publish_lock(root, name):
            os.rename(tmp, versions / version)
            _fsync_dir(versions)
            pointer = index_dir(root, name) / f".{CURRENT}.{version}.tmp"
            with pointer.open("w", encoding="utf-8") as fh:
                fh.write(version + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(pointer, index_dir(root, name) / CURRENT)
            _fsync_dir(index_dir(root, name))
            prune_versions(root, name, stores=stores)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return version


def prune_versions(
    root: Path, name: str, keep: int = KEEP_VERSIONS, *, stores: StoreConfig | None = None
) -> list[str]:
    """Delete all but the newest ``keep`` versions (never the current one)."""
    versions = index_dir(root, name) / VERSIONS
    current = read_current(root, name)
    done = sorted(p.name for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for version in done[:-keep] if keep > 0 else done:
        if version != current:
            _remove_version(versions / version, stores)
            removed.append(version)
    return removed


def _remove_version(path: Path, stores: StoreConfig | None) -> None:
    """The version's vectors first (a pgvector table, a Qdrant collection), then its files.

    A store that cannot drop the table now (unreachable) leaves it behind with a
    warning naming it: pruning runs after the switch, so failing here would fail a
    publish that already succeeded."""
    try:
        drop_vectors(read_manifest(path), stores)
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    except Exception as exc:
        log.warning("version_vectors_not_dropped", version=path.name,
                    exc_type=type(exc).__name__, hint="drop the table / collection by hand")
    shutil.rmtree(path, ignore_errors=True)


def delete_index(root: Path, name: str, *, stores: StoreConfig | None = None) -> list[str]:
    """Remove index ``name``: ``CURRENT`` first (readers stop seeing it at once), then
    every version with its vectors. Returns the versions removed; raises
    :class:`~ragward.errors.DependencyUnavailable`, changing nothing, when the current
    version's store does not answer."""
    base = index_dir(root, name)
    current = read_current(root, name)
    if current is None:
        raise NotFound(f"index {name!r} does not exist")
    # an unreachable store fails the delete before anything is gone, not after CURRENT
    check_reachable(store_of(read_manifest(version_dir(root, name, current))), stores)
    with _publish_lock(root, name):
        (base / CURRENT).unlink(missing_ok=True)
        _fsync_dir(base)
        removed = prune_versions(root, name, keep=0, stores=stores)
    shutil.rmtree(base, ignore_errors=True)
    return removed


def read_manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    return data


@dataclass
class IndexSnapshot:
    """One version of one index, in memory and immutable."""

    name: str
    version: str
    manifest: dict[str, Any]
    index: VectorStoreIndex
    nodes: list[BaseNode]
    dense: DenseSearch
    lexical: LexicalIndex = field(repr=False)
    # second-stage scoring (rag_core.rerank): per row, is the chunk Chinese; and the
    # chunks' sentence vectors, None for a version built without them
    chinese_rows: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    sentences: SentenceVectors | None = field(repr=False, default=None)

    @property
    def documents(self) -> int:
        return int(self.manifest.get("documents", 0))

    def top_k(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, similarity) of the k rows nearest the query embedding, best first."""
        return self.dense.top_k(query, k)


def load_snapshot(
    root: Path,
    name: str,
    embed_model: BaseEmbedding,
    callback_manager: CallbackManager,
    attempts: int = 3,
    *,
    stores: StoreConfig | None = None,
) -> IndexSnapshot:
    """Load the current version of ``name``; retry if it is replaced while loading."""
    last_error: Exception | None = None
    for _ in range(attempts):
        version = read_current(root, name)
        if version is None:
            raise NotFound(f"index {name!r} does not exist")
        path = version_dir(root, name, version)
        try:
            return _load_version(path, name, version, embed_model, callback_manager, stores)
        except FileNotFoundError as exc:  # pruned between reading CURRENT and loading
            last_error = exc
    raise NotFound(f"index {name!r} could not be loaded: {last_error}")


def _load_version(
    path: Path,
    name: str,
    version: str,
    embed_model: BaseEmbedding,
    callback_manager: CallbackManager,
    stores: StoreConfig | None,
) -> IndexSnapshot:
    manifest = read_manifest(path)
    vector_store, dense, ids = open_dense(path, manifest, stores)
    storage = StorageContext.from_defaults(persist_dir=str(path), vector_store=vector_store)
    index = load_index_from_storage(
        storage, embed_model=embed_model, callback_manager=callback_manager
    )
    if not isinstance(index, VectorStoreIndex):
        raise NotFound(f"index {name!r} is not a vector index")
    nodes = index.docstore.get_nodes(ids) if ids else []
    lexical = LexicalIndex.load(path, ids) or LexicalIndex.build(
        ids, [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    )
    return IndexSnapshot(
        name=name,
        version=version,
        manifest=manifest,
        index=index,
        nodes=nodes,
        dense=dense,
        lexical=lexical,
        chinese_rows=np.asarray(
            [is_chinese(n.get_content(metadata_mode=MetadataMode.NONE)) for n in nodes], bool
        ),
        sentences=SentenceVectors.load(path, len(nodes)),
    )
