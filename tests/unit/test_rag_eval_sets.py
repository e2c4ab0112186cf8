"""The evaluation sets are what rag_core/evaluate.py says they are."""

from __future__ import annotations

from collections import Counter

import pytest

from rag_core.evaluate import load_eval_set
from rag_core.ingest import sample_corpus_dir
from rag_core.lexical import terms
from rag_core.text import english_terms, has_cjk


@pytest.mark.parametrize(("name", "per_language"), [("paraphrase", 40),
                                                    ("paraphrase-heldout", 20),
                                                    ("paraphrase-third", 16),
                                                    ("paraphrase-fourth", 16)])
def test_paraphrase_questions_share_no_content_word_with_their_document(
    name: str, per_language: int
) -> None:
    """Every question of the paraphrase sets (the tuning one and the held-out ones)
    shares no English stem and no Chinese word (jieba, function characters aside) with
    the document that answers it; enough per language; every answer is a bundled
    document in the question's language; no question repeats within a set."""
    items = load_eval_set(name)
    assert min(Counter(i["lang"] for i in items).values()) >= per_language
    overlaps = []
    for item in items:
        path = sample_corpus_dir() / item["source"]
        assert path.is_file(), item
        assert item["source"].startswith(item["lang"] + "-")
        assert has_cjk(item["question"]) == (item["lang"] == "zh")
        doc = path.read_text(encoding="utf-8")
        words = (
            set(english_terms(item["question"])) & set(english_terms(doc))
            if item["lang"] == "en"
            else {t for t in terms(item["question"]) if has_cjk(t)} & set(terms(doc))
        )
        if words:
            overlaps.append((item["question"], sorted(words)))
    assert overlaps == []
    assert len({i["question"] for i in items}) == len(items)


def test_the_held_out_sets_share_no_question_with_the_tuning_set_or_each_other() -> None:
    """The held-out questions are new ones, not copies of those the constants were tuned on
    nor of each other's."""
    names = ("paraphrase", "paraphrase-heldout", "paraphrase-third", "paraphrase-fourth")
    questions = {name: {i["question"] for i in load_eval_set(name)} for name in names}
    shared = [(a, b, questions[a] & questions[b])
              for i, a in enumerate(names) for b in names[i + 1:] if questions[a] & questions[b]]
    assert shared == []


def test_bundled_eval_set_names_existing_documents() -> None:
    """The bundled eval set's answers are bundled documents."""
    items = load_eval_set("eval")
    assert all((sample_corpus_dir() / i["source"]).is_file() for i in items)
