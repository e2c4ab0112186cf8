
"""The offline hashed embedding: deterministic, normalised, and meaningful in both languages."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from rag_core.embedding import HashedEmbedding, coverage, hashed_features, sparse_dot


def _cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_are_unit_length_and_sized() -> None:
    """Every non-empty text maps to an L2-normalised vector of ``dim`` floats."""
    model = HashedEmbedding(dim=1024)
    vec = model.get_text_embedding("Annual leave is 25 days.")
    assert len(vec) == 1024
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
    assert not any(model.get_text_embedding("。！？"))  # nothing to embed -> zero vector


def test_same_text_same_vector_across_processes() -> None:
    """CRC-32 hashing, not Python's salted hash(): an index built by one process
    is queried by another."""
    code = (
        "from rag_core.embedding import hashed_features;"
        "print(sorted(hashed_features('报销流程 expense claim', 8192).items())[:5])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(outputs) == 1
    here = sorted(hashed_features("报销流程 expense claim", 8192).items())[:5]
    assert outputs.pop().strip() == str(here)


def test_related_texts_are_closer_than_unrelated_ones() -> None:
    """Paraphrases share features in English (stems) and Chinese (character bigrams)."""
    model = HashedEmbedding()
    q_en = model.get_query_embedding("How do I submit an expense claim?")
    assert _cos(q_en, model.get_text_embedding("Submit expense claims in Expensify.")) > _cos(
        q_en, model.get_text_embedding("Passwords must be 14 characters long.")
    )
    q_zh = model.get_query_embedding("公司的年假政策是什么?")
    assert _cos(q_zh, model.get_text_embedding("正式员工每年享有 15 天带薪年假。")) > _cos(
        q_zh, model.get_text_embedding("报销单须在费用发生后 30 天内提交。")
    )


def test_coverage_measures_share_of_the_question() -> None:
    """coverage() is 1.0 when the other text has every question feature, lower otherwise."""
    q = hashed_features("submit expense claim", 8192)
    assert abs(coverage(q, hashed_features("How to submit an expense claim", 8192)) - 1.0) < 1e-6
    assert coverage(q, hashed_features("expense", 8192)) < 0.5
    assert sparse_dot(q, q) > 0.999
