"""A LlamaIndex retriever over an in-memory :class:`~rag_core.store.IndexSnapshot`.

Three modes (``RAGWARD_RETRIEVAL``):

* ``dense``: the query's embedding against the snapshot's vectors (one
  matrix-vector product for the embedded store, a query to pgvector or Qdrant
  otherwise) to a depth of ``max(top_k, CANDIDATES)``, then re-scored by
  :mod:`rag_core.rerank` (the chunks' sentence vectors, the question's language);
* ``bm25``: the snapshot's BM25 index (:mod:`rag_core.lexical`) alone; the query
  is not embedded;
* ``hybrid``: the re-scored dense list and BM25 (chunks sharing at least
  ``HYBRID_MIN_SHARED_TERMS`` terms with the question), each to a depth of
  ``max(top_k, CANDIDATES)``, fused by reciprocal rank (:mod:`rag_core.fusion`);
  the source's score is the fused score.

``auto`` is dense for both backends. For the offline one that is measured
(``make eval``): on questions that share no word with their answer BM25 can only
match the wrong documents, and fusing it cost the paraphrase sets 0.2-0.3 of
hit@1 while the bundled (same-words) set is answered as well without it. Set
``hybrid`` to have exact names and codes ("GlobalProtect", "PIP") count.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from rag_core.fusion import reciprocal_rank_fusion
from rag_core.rerank import rescore
from rag_core.store import IndexSnapshot
from ragward import tracing

Mode = Literal["hybrid", "dense", "bm25"]
# The second stage can lift only what the first stage fetched, and what it lifts is a
# chunk whose vector is diluted by sentences about other things: at 20 the answer of
# "What is the summer chat with my boss for?" was cut off at the chunk stage
# (make eval, use-m3-bge dense, hit@1/hit@3: paraphrase.json unchanged at
# .854/.979 en, .875/.979 zh; held-out en .840/.920 -> .840/.960, the rest unchanged;
# 40 ranks the 97 chunks of the handbook exactly as rescoring them all does). USE-m3
# alone, no longer the default, moves both ways: paraphrase.json en .771/.938 ->
# .792/.979, zh .812/.938 -> .792/.938; held-out zh hit@3 .917 -> .875.
CANDIDATES = 40
# In hybrid, a chunk counts for BM25 only when it shares two distinct terms with the
# question (or its only one): a single incidental word ("computer", "boss") is what
# BM25 matches on a paraphrase, always in a wrong document; names and codes asked
# alone still count. make eval, paraphrase hit@1: 0.54 -> 0.75 (en), 0.67 -> 0.81 (zh).
HYBRID_MIN_SHARED_TERMS = 2


class SnapshotRetriever(BaseRetriever):
    def __init__(
        self,
        snapshot: IndexSnapshot,
        embed_model: BaseEmbedding,
        top_k: int,
        callback_manager: CallbackManager,
        mode: Mode = "dense",
    ) -> None:
        self._snapshot = snapshot
        self._embed_model = embed_model
        self._top_k = top_k
        self._mode: Mode = mode
        super().__init__(callback_manager=callback_manager)

    def _hits(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        snapshot, k = self._snapshot, self._top_k
        if self._mode == "bm25":
            ranked = snapshot.lexical.top_k(query_bundle.query_str, k)
        else:
            query = np.asarray(query_bundle.embedding, dtype=np.float32)
            depth = max(k, CANDIDATES)
            dense = rescore(snapshot.top_k(query, depth), query, query_bundle.query_str,
                            chinese_rows=snapshot.chinese_rows, sentences=snapshot.sentences)
            if self._mode == "dense":
                ranked = dense[:k]
            else:
                lexical = snapshot.lexical.top_k(query_bundle.query_str, depth,
                                                 min_shared=HYBRID_MIN_SHARED_TERMS)
                ranked = reciprocal_rank_fusion(
                    [[row for row, _ in dense], [row for row, _ in lexical]], limit=k
                )
        return [NodeWithScore(node=snapshot.nodes[row], score=score) for row, score in ranked]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is None and self._mode != "bm25":
            query_bundle.embedding = self._embed_model.get_query_embedding(query_bundle.query_str)
        return self._hits(query_bundle)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with tracing.span("retrieve", attributes={"ragward.index": self._snapshot.name,
                                                  "ragward.top_k": self._top_k}):
            if query_bundle.embedding is None and self._mode != "bm25":
                query_bundle.embedding = await self._embed_model.aget_query_embedding(
                    query_bundle.query_str
                )
            if self._mode != "bm25" and self._snapshot.dense.blocking:
                return await asyncio.to_thread(self._hits, query_bundle)  # pgvector, Qdrant
            return self._hits(query_bundle)
