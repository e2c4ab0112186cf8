"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009).

Each ranked list gives a row ``weight / (k + rank)`` (rank from 1); a row's
fused score is the sum over the lists it appears in. Ranks, not scores, are
fused, so BM25 scores (unbounded) and cosines (-1..1) need no calibration, and a
row that both lists rank well beats one that only one list loves.

Our own dozen lines rather than LlamaIndex's ``QueryFusionRetriever``
(``mode="reciprocal_rerank"``): that one keys nodes by content hash, so two
identical chunks from different documents collapse into one source; it fixes
``k`` at 60 and has no per-list weight; and its synchronous path runs an event
loop of its own for every query. Here both lists are rows of one snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60.0


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]],
    *,
    weights: Sequence[float] | None = None,
    k: float = RRF_K,
    limit: int | None = None,
) -> list[tuple[int, float]]:
    """(row, fused score) best first; ties keep the order rows were first seen in."""
    weights = weights if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, row in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + weight / (k + rank)
    ranked = sorted(fused.items(), key=lambda item: -item[1])  # stable: first seen wins ties
    return ranked[:limit] if limit is not None else ranked
