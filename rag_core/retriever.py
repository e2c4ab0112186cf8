"""A LlamaIndex retriever over an in-memory :class:`~rag_core.store.IndexSnapshot`.

The stock ``VectorIndexRetriever`` over ``SimpleVectorStore`` converts every
stored embedding to an array on each query; this one keeps the snapshot's
normalised matrix and does one matrix-vector product and a partial sort.
"""

from __future__ import annotations

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from rag_core.store import IndexSnapshot
from ragward import tracing


class SnapshotRetriever(BaseRetriever):
    def __init__(
        self,
        snapshot: IndexSnapshot,
        embed_model: BaseEmbedding,
        top_k: int,
        callback_manager: CallbackManager,
    ) -> None:
        self._snapshot = snapshot
        self._embed_model = embed_model
        self._top_k = top_k
        super().__init__(callback_manager=callback_manager)

    def _hits(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = np.asarray(query_bundle.embedding, dtype=np.float32)
        return [
            NodeWithScore(node=self._snapshot.nodes[row], score=score)
            for row, score in self._snapshot.top_k(query, self._top_k)
        ]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is None:
            query_bundle.embedding = self._embed_model.get_query_embedding(query_bundle.query_str)
        return self._hits(query_bundle)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with tracing.span("retrieve", attributes={"ragward.index": self._snapshot.name,
                                                  "ragward.top_k": self._top_k}):
            if query_bundle.embedding is None:
                query_bundle.embedding = await self._embed_model.aget_query_embedding(
                    query_bundle.query_str
                )
            return self._hits(query_bundle)
