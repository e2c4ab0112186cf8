"""A LlamaIndex vector store backed by one float32 numpy matrix, persisted as ``.npz``.

LlamaIndex's ``SimpleVectorStore`` keeps embeddings as Python lists and
persists them as JSON through dataclasses-json: with 8192-dimensional hashed
embeddings that is seconds per hundred chunks and megabytes of text. This store
keeps rows L2-normalised in one matrix, so a query is one matrix-vector product
and persistence is a single binary file next to the docstore.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    VectorStoreQuery,
    VectorStoreQueryResult,
)

FILE_NAME = "default__vector_store.npz"


def _normalised(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    result: np.ndarray = (rows / norms).astype(np.float32, copy=False)
    return result


def top_k(
    matrix: np.ndarray, query: np.ndarray, k: int, transposed: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """(row, cosine) of the ``k`` best rows of a row-normalised matrix, best first.

    ``transposed`` (``matrix.T``, C-contiguous) enables the sparse path: a hashed
    query has a few dozen non-zero buckets, so gathering those rows of the
    transposed matrix is ~50x cheaper than a full product — and avoids waking
    OpenBLAS's thread pool, which on a busy 2-core box costs milliseconds.
    """
    n = matrix.shape[0]
    norm = float(np.linalg.norm(query)) if n else 0.0
    if n == 0 or norm == 0.0 or k <= 0:
        return []
    query = (query / norm).astype(np.float32, copy=False)
    nonzero = np.flatnonzero(query)
    if transposed is not None and len(nonzero) * 8 < len(query):
        scores = query[nonzero] @ transposed[nonzero]
    else:
        scores = matrix @ query
    k = min(k, n)
    idx = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [(int(i), float(scores[i])) for i in idx]


class NumpyVectorStore(BasePydanticVectorStore):
    """Embeddings only (``stores_text=False``): nodes live in the docstore."""

    stores_text: bool = False
    is_embedding_query: bool = True

    _ids: list[str] = PrivateAttr(default_factory=list)
    _ref_ids: list[str] = PrivateAttr(default_factory=list)
    _matrix: np.ndarray | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "NumpyVectorStore"

    @property
    def client(self) -> None:
        return None

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def matrix(self) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised, in the order of :attr:`ids`."""
        if self._matrix is None:
            return np.zeros((0, 1), dtype=np.float32)
        return self._matrix

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        if not nodes:
            return []
        rows = np.asarray([node.get_embedding() for node in nodes], dtype=np.float32)
        rows = _normalised(rows)
        self._matrix = rows if self._matrix is None else np.vstack([self._matrix, rows])
        for node in nodes:
            self._ids.append(node.node_id)
            self._ref_ids.append(node.ref_doc_id or "")
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        keep = [i for i, ref in enumerate(self._ref_ids) if ref != ref_doc_id]
        self._ids = [self._ids[i] for i in keep]
        self._ref_ids = [self._ref_ids[i] for i in keep]
        if self._matrix is not None:
            self._matrix = self._matrix[keep]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if query.query_embedding is None:
            raise ValueError("NumpyVectorStore answers embedding queries only")
        hits = top_k(
            self.matrix, np.asarray(query.query_embedding, dtype=np.float32),
            query.similarity_top_k,
        )
        return VectorStoreQueryResult(
            ids=[self._ids[i] for i, _ in hits], similarities=[s for _, s in hits]
        )

    def persist(self, persist_path: str, fs: Any = None) -> None:
        """Write ``<dir>/default__vector_store.npz`` (``persist_path`` names its directory)."""
        path = Path(persist_path).parent / FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            ids=np.asarray(self._ids, dtype=str),
            ref_ids=np.asarray(self._ref_ids, dtype=str),
            matrix=self.matrix,
        )
        os.replace(tmp, path)

    @classmethod
    def from_persist_dir(cls, persist_dir: str | Path) -> NumpyVectorStore:
        store = cls()
        with np.load(Path(persist_dir) / FILE_NAME, allow_pickle=False) as data:
            store._ids = [str(x) for x in data["ids"]]
            store._ref_ids = [str(x) for x in data["ref_ids"]]
            store._matrix = np.ascontiguousarray(data["matrix"], dtype=np.float32)
        return store
