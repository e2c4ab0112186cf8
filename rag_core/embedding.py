"""An offline embedding for Chinese and English that needs no downloaded weights.

Text becomes a bag of hashed features, L2-normalised:

* English: stemmed content words (weight 1.0), pairs of neighbouring content
  words (0.6) and character trigrams of each word (0.15, so "reimburse" and
  "reimbursement" still meet);
* Chinese: character bigrams (1.0) and single characters (0.4), which together
  approximate words without a segmentation dictionary.

Term frequency is damped (1 + ln tf). Features are hashed with CRC-32 (stable
across processes, unlike ``hash()``) into ``dim`` buckets with a sign bit, so
collisions cancel out on average. The vectors are sparse in spirit; the
``sparse_features`` method exposes them as a dict for cheap sentence scoring.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field

from rag_core.text import (
    CHINESE_PARTICLES,
    CHINESE_STOP_BIGRAMS,
    CHINESE_STOP_CHARS,
    english_terms,
    iter_segments,
    normalize,
)

W_WORD, W_WORD_PAIR, W_TRIGRAM = 1.0, 0.6, 0.15
W_CJK_BIGRAM, W_CJK_CHAR = 1.0, 0.4

SparseVector = dict[int, float]


def _raw_features(text: str) -> dict[str, tuple[int, float]]:
    """Feature name -> (occurrences, weight of one occurrence)."""
    feats: dict[str, tuple[int, float]] = {}

    def add(name: str, weight: float) -> None:
        seen = feats.get(name)
        feats[name] = (seen[0] + 1, weight) if seen else (1, weight)

    for is_cjk, segment in iter_segments(normalize(text)):
        if is_cjk:
            for i, ch in enumerate(segment):
                if ch not in CHINESE_STOP_CHARS:
                    add("c:" + ch, W_CJK_CHAR)
                if i + 1 < len(segment):
                    pair = segment[i : i + 2]
                    if not (
                        pair in CHINESE_STOP_BIGRAMS
                        or pair[0] in CHINESE_PARTICLES
                        or pair[1] in CHINESE_PARTICLES
                        or (pair[0] in CHINESE_STOP_CHARS and pair[1] in CHINESE_STOP_CHARS)
                    ):
                        add("b:" + pair, W_CJK_BIGRAM)
            continue
        words = english_terms(segment)
        for i, word in enumerate(words):
            add("w:" + word, W_WORD)
            if i + 1 < len(words):
                add("p:" + word + " " + words[i + 1], W_WORD_PAIR)
            if word.isalpha() and len(word) > 4:
                padded = f"<{word}>"
                for j in range(len(padded) - 2):
                    add("t:" + padded[j : j + 3], W_TRIGRAM)
    return feats


def hashed_features(text: str, dim: int) -> SparseVector:
    """Bucket -> weight, L2-normalised (empty for text without any feature)."""
    vec: SparseVector = {}
    for name, (count, weight) in _raw_features(text).items():
        h = zlib.crc32(name.encode("utf-8"))
        bucket = h % dim
        sign = 1.0 if (h >> 31) & 1 == 0 else -1.0
        damped = weight * (1.0 + math.log(count))
        vec[bucket] = vec.get(bucket, 0.0) + sign * damped
    norm = math.sqrt(sum(v * v for v in vec.values()))
    if norm == 0.0:
        return {}
    return {k: v / norm for k, v in vec.items() if v != 0.0}


def coverage(query: SparseVector, other: SparseVector) -> float:
    """Share of the (unit) query's weight that ``other`` also has: 1.0 = every query term."""
    return sum(v * v for k, v in query.items() if k in other)


def sparse_dot(a: SparseVector, b: SparseVector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(k, 0.0) for k, v in a.items())


class HashedEmbedding(BaseEmbedding):
    """LlamaIndex embedding of hashed word and CJK character n-grams (no model download)."""

    dim: int = Field(default=8192, ge=64, le=1 << 16, description="Number of hash buckets.")
    model_name: str = Field(default="local-hash-v1")

    def __init__(self, dim: int = 8192, **kwargs: Any) -> None:
        kwargs.setdefault("model_name", f"local-hash-v1-{dim}")
        kwargs.setdefault("embed_batch_size", 256)
        super().__init__(dim=dim, **kwargs)  # type: ignore[call-arg]  # pydantic field

    @classmethod
    def class_name(cls) -> str:
        return "HashedEmbedding"

    def sparse_features(self, text: str) -> SparseVector:
        """The embedding as {bucket: weight}."""
        return hashed_features(text, self.dim)

    def dense(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        sparse = self.sparse_features(text)
        if sparse:
            vec[np.fromiter(sparse.keys(), dtype=np.int64, count=len(sparse))] = np.fromiter(
                sparse.values(), dtype=np.float32, count=len(sparse)
            )
        return vec

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.dense(query).tolist()  # type: ignore[no-any-return]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.dense(text).tolist()  # type: ignore[no-any-return]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [self._get_text_embedding(t) for t in texts]
