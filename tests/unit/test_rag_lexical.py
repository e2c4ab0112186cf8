"""BM25 terms (jieba for Chinese, stems for English), ranking, persistence, fusion."""

from __future__ import annotations

from pathlib import Path

from rag_core.fusion import reciprocal_rank_fusion
from rag_core.lexical import LexicalIndex, terms

DOCS = [
    "Connect through the company VPN (GlobalProtect) when accessing internal systems.",
    "Passwords must be at least 14 characters long and unique for every system.",
    "正式员工每年享有 15 天带薪年假，年假按自然年计算。",
    "出差补贴为每天 150 元，包含餐费和市内交通费。",
]


def test_chinese_terms_are_words_not_characters() -> None:
    """Chinese text is segmented into words (search mode adds the words inside long ones:
    "笔记本电脑" also gives "电脑"); function characters are dropped."""
    found = terms("我的笔记本电脑怎么申请报销")
    assert {"笔记本电脑", "电脑", "申请", "报销"} <= set(found)
    assert "的" not in found and "我" not in found and "怎么" not in found


def test_english_terms_are_stemmed_content_words() -> None:
    """English terms drop stop words and meet across inflections."""
    assert terms("The reimbursements of expenses") == terms("reimbursement expense")


def test_mixed_text_yields_both_kinds_of_terms() -> None:
    """A Chinese sentence naming an English product keeps both."""
    found = terms("连接 GlobalProtect 访问公司系统")
    assert "globalprotect" in found
    assert "系统" in found


def test_bm25_ranks_the_row_with_the_rare_term_first() -> None:
    """A query for an exact name finds the only row with it, in either language; rows
    sharing no term are not returned at all."""
    index = LexicalIndex.build([f"n{i}" for i in range(len(DOCS))], DOCS)
    assert index.top_k("GlobalProtect", 3)[0][0] == 0
    assert index.top_k("带薪年假有几天", 3)[0][0] == 2
    assert [row for row, _ in index.top_k("出差补贴", 5)] == [3]
    assert index.top_k("zebra", 3) == []
    assert index.top_k("", 3) == []


def test_min_shared_drops_rows_that_share_one_incidental_word() -> None:
    """With min_shared=2 a row must share two distinct terms with the question: the
    password row matching only "system" drops out of "Which system lets me reach the VPN?"
    while the VPN row (two terms) stays; a one-term question still finds its row."""
    index = LexicalIndex.build([f"n{i}" for i in range(len(DOCS))], DOCS)
    question = "Which system does the VPN need?"
    assert {row for row, _ in index.top_k(question, 5)} == {0, 1}
    assert [row for row, _ in index.top_k(question, 5, min_shared=2)] == [0]
    assert [row for row, _ in index.top_k("GlobalProtect", 5, min_shared=2)] == [0]
    assert [row for row, _ in index.top_k("出差补贴标准", 5, min_shared=2)] == [3]


def test_saved_index_loads_only_for_the_same_rows(tmp_path: Path) -> None:
    """A saved index scores exactly as before after loading; loading against other rows
    (a version whose order changed) gives None so the caller rebuilds instead of
    pairing scores with the wrong nodes."""
    ids = [f"n{i}" for i in range(len(DOCS))]
    index = LexicalIndex.build(ids, DOCS)
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path, ids)
    assert loaded is not None
    assert loaded.top_k("年假 password", 4) == index.top_k("年假 password", 4)
    assert LexicalIndex.load(tmp_path, list(reversed(ids))) is None
    assert LexicalIndex.load(tmp_path / "missing", ids) is None


def test_empty_index_saves_and_answers_nothing(tmp_path: Path) -> None:
    """An index without rows round-trips and returns no hits (no bm25s error)."""
    empty = LexicalIndex.build([], [])
    empty.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path, [])
    assert loaded is not None and loaded.top_k("anything", 3) == []


def test_rrf_prefers_rows_both_rankings_agree_on() -> None:
    """Reciprocal rank fusion: a row second in both lists beats a row first in only one;
    scores are sum(weight / (60 + rank)); limit cuts the fused list."""
    fused = reciprocal_rank_fusion([[1, 2, 3], [4, 2, 5]])
    assert fused[0][0] == 2
    assert abs(fused[0][1] - 2 / 62) < 1e-12
    assert {row for row, _ in fused} == {1, 2, 3, 4, 5}
    assert len(reciprocal_rank_fusion([[1, 2, 3], [4, 2, 5]], limit=2)) == 2


def test_rrf_weights_and_ties() -> None:
    """A heavier list wins a tie of ranks; equal scores keep the order first seen."""
    assert reciprocal_rank_fusion([[1], [2]], weights=[1.0, 2.0])[0][0] == 2
    assert [row for row, _ in reciprocal_rank_fusion([[1], [2]])] == [1, 2]
    assert reciprocal_rank_fusion([]) == []
