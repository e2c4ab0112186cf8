"""The second stage of dense retrieval (rag_core/rerank.py): sentence vectors and language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from llama_index.core.schema import TextNode

from rag_core.embedding import HashedEmbedding
from rag_core.fused_encoder import FusedEncoderEmbedding
from rag_core.rerank import (
    LANGUAGE_PENALTY,
    SentenceVectors,
    is_chinese,
    rescore,
    wants_sentence_vectors,
)
from rag_core.sentence_encoder import SentenceEncoderEmbedding


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def _vectors(rows: list[int], *sentences: np.ndarray) -> SentenceVectors:
    return SentenceVectors(np.stack(sentences), np.asarray(rows, dtype=np.int64))


def test_a_chunk_whose_one_sentence_answers_beats_a_chunk_near_on_average() -> None:
    """Row 1's chunk vector is a little further from the query than row 0's, but one of
    its sentences is the query itself: re-scored, row 1 comes first; without sentence
    vectors the first stage's order stands."""
    query = _unit(1, 0, 0)
    sentences = _vectors([0, 0, 1, 1], _unit(1, 1, 0), _unit(1, 0, 1),
                         _unit(1, 0, 0), _unit(0, 1, 1))
    candidates = [(0, 0.70), (1, 0.60)]
    chinese = np.zeros(2, dtype=bool)
    ranked = rescore(candidates, query, "q", chinese_rows=chinese, sentences=sentences)
    assert [row for row, _ in ranked] == [1, 0]
    assert ranked[0][1] == np.float32(0.5 * 0.60 + 0.5 * 1.0)
    plain = rescore(candidates, query, "q", chinese_rows=chinese, sentences=None)
    assert [row for row, _ in plain] == [0, 1]


def test_the_questions_language_wins_a_near_tie_but_not_a_clear_match() -> None:
    """An English question prefers the English chunk over its Chinese twin that scores a
    little higher, and a Chinese question the other way round; a chunk in the other
    language that is better by more than the penalty still wins."""
    query = _unit(1, 0)
    chinese = np.asarray([True, False, True])
    near = [(0, 0.80), (1, 0.78)]
    english = rescore(near, query, "How much vacation do I get?", chinese_rows=chinese,
                      sentences=None)
    assert [row for row, _ in english] == [1, 0]
    chinese_question = rescore([(1, 0.80), (0, 0.78)], query, "我有几天年假？",
                               chinese_rows=chinese, sentences=None)
    assert [row for row, _ in chinese_question] == [0, 1]
    clear = [(2, 0.78 + LANGUAGE_PENALTY + 0.05), (1, 0.78)]
    assert rescore(clear, query, "vacation?", chinese_rows=chinese, sentences=None)[0][0] == 2


def test_a_row_without_sentences_keeps_its_chunk_score() -> None:
    """A chunk with no sentence vector (none was split out of it) is scored by its chunk
    cosine alone, not dropped and not NaN."""
    sentences = _vectors([0], _unit(0, 1))
    ranked = rescore([(0, 0.5), (1, 0.9)], _unit(1, 0), "q",
                     chinese_rows=np.zeros(2, dtype=bool), sentences=sentences)
    assert ranked == [(1, np.float32(0.9)), (0, np.float32(0.25))]


def test_is_chinese_counts_scripts() -> None:
    """Chinese with a few Latin product names is Chinese; English with a Chinese name is not."""
    assert is_chinese("访问公司内网必须连接公司 VPN（GlobalProtect）。")
    assert not is_chinese("Email 王敏 about leave, or call extension 8021.")
    assert not is_chinese("")


def test_sentence_vectors_are_built_per_chunk_saved_and_checked_on_load(
    tmp_path: Path,
) -> None:
    """Each sentence of a chunk (the title line included) gets a unit row pointing at its
    chunk; the file round-trips; a version without the file, or whose file names rows the
    version does not have, loads as None (the retriever then scores chunks alone)."""
    nodes = [TextNode(text="Passwords need 14 characters. Rotate them yearly.",
                      metadata={"title": "Security"}),
             TextNode(text="年假 15 天。病假 12 天。", metadata={"title": "年假"})]
    for node in nodes:
        node.excluded_embed_metadata_keys = []
    built = SentenceVectors.build(nodes, HashedEmbedding(dim=256))
    assert built.rows.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.allclose(np.linalg.norm(built.matrix, axis=1), 1.0, atol=1e-5)
    built.save(tmp_path)
    loaded = SentenceVectors.load(tmp_path, row_count=2)
    assert loaded is not None
    assert np.array_equal(loaded.matrix, built.matrix)
    assert loaded.rows.tolist() == built.rows.tolist()
    assert SentenceVectors.load(tmp_path, row_count=1) is None
    assert SentenceVectors.load(tmp_path / "missing", row_count=2) is None


def test_only_the_offline_sentence_encoders_get_sentence_vectors() -> None:
    """USE-m3, alone or fused with e5 (free, where they were measured to help), gets them;
    hashed vectors do not."""
    assert wants_sentence_vectors(SentenceEncoderEmbedding())
    assert wants_sentence_vectors(FusedEncoderEmbedding())
    assert not wants_sentence_vectors(HashedEmbedding(dim=256))
