"""BM25 over one index version: terms, the ``bm25s`` index, and its files.

Terms are what :mod:`rag_core.text` calls terms in English (lower-cased,
stop words dropped, light stemming) and, for Chinese, the words of ``jieba``'s
search mode (a long word also yields the shorter words inside it, so
"年假申请" meets "年假"), without single function characters. A Chinese text has
no spaces, so a character-level BM25 would match "年" in every leave question
with every date: the segmenter is what makes BM25 usable for Chinese.

The index is built once per version at ingest and saved inside the version
directory (``bm25/``), so a re-ingest publishes the new BM25 together with the
new vectors, and a reader never pairs one version's vectors with another's terms.
Rows are the version's nodes in order; ``ids.json`` records them so a load can
check that the order still holds.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_core.text import (
    CHINESE_PARTICLES,
    CHINESE_STOP_CHARS,
    english_terms,
    iter_segments,
    normalize,
)

if TYPE_CHECKING:
    import bm25s

DIR_NAME = "bm25"
IDS_FILE = "ids.json"


@functools.cache
def _segmenter() -> Any:
    """One jieba dictionary per process, loaded on first use (~0.5 s, cached on disk)."""
    with warnings.catch_warnings():
        # jieba 0.42 (2020, still the reference segmenter) has regexes with invalid
        # escapes that Python warns about while compiling it, once per environment
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        import jieba
    logging.getLogger("jieba").setLevel(logging.WARNING)  # its start-up chatter on stderr
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def _chinese_word(word: str) -> bool:
    """False for function characters and words made only of them ("什么", "的")."""
    return not all(ch in CHINESE_STOP_CHARS or ch in CHINESE_PARTICLES for ch in word)


def terms(text: str) -> list[str]:
    """The BM25 terms of ``text``, Chinese and English alike, in order."""
    found: list[str] = []
    for is_cjk, segment in iter_segments(normalize(text)):
        if is_cjk:
            found.extend(w for w in _segmenter().lcut_for_search(segment) if _chinese_word(w))
        else:
            found.extend(english_terms(segment))
    return found


class LexicalIndex:
    """BM25 scores of a query against every row (node) of one version."""

    def __init__(self, bm25: bm25s.BM25, ids: list[str]) -> None:
        self._bm25 = bm25
        self.ids = ids

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str]) -> LexicalIndex:
        import bm25s  # imported by who builds or loads BM25, not by every rag_core import

        bm25 = bm25s.BM25()
        corpus = [terms(t) or [""] for t in texts]  # bm25s wants a token per document
        if corpus:
            bm25.index(corpus, show_progress=False)
        return cls(bm25, list(ids))

    def top_k(self, query: str, k: int, *, min_shared: int = 1) -> list[tuple[int, float]]:
        """(row, BM25 score) of the ``k`` best rows sharing at least ``min_shared`` distinct
        terms with ``query`` (all of them when it has fewer), best first."""
        tokens = terms(query)
        if not tokens or not self.ids or k <= 0:
            return []
        scores = np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)
        matching = np.flatnonzero(scores > 0.0)
        distinct = list(dict.fromkeys(tokens))
        needed = min(min_shared, len(distinct))
        if needed > 1 and len(matching):
            shared = sum(
                (np.asarray(self._bm25.get_scores([t]), dtype=np.float32)[matching] > 0.0)
                .astype(np.int32) for t in distinct
            )
            matching = matching[shared >= needed]
        if len(matching) > k:
            matching = matching[np.argpartition(-scores[matching], k - 1)[:k]]
        ranked = matching[np.argsort(-scores[matching], kind="stable")]
        return [(int(i), float(scores[i])) for i in ranked]

    def save(self, version_dir: Path) -> None:
        target = version_dir / DIR_NAME
        target.mkdir(parents=True, exist_ok=True)
        if self.ids:
            self._bm25.save(str(target))
        (target / IDS_FILE).write_text(json.dumps(self.ids), encoding="utf-8")

    @classmethod
    def load(cls, version_dir: Path, expected_ids: Sequence[str]) -> LexicalIndex | None:
        """The saved index, or None when the version has none (built before BM25 existed)
        or its rows are not ``expected_ids`` in order (then the caller rebuilds it)."""
        target = version_dir / DIR_NAME
        try:
            ids = json.loads((target / IDS_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if ids != list(expected_ids):
            return None
        import bm25s

        bm25 = bm25s.BM25.load(str(target)) if ids else bm25s.BM25()
        return cls(bm25, ids)
