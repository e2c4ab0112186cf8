
"""Bilingual text handling: sentences, terms, and the chunk splitter."""

from __future__ import annotations

from rag_core.text import (
    english_terms,
    has_cjk,
    make_splitter,
    sentence_pieces,
    split_sentences,
    stem,
)


def test_split_sentences_handles_chinese_and_english_terminators() -> None:
    """Sentences end at 。！？ and at .!? followed by a space; list markers are dropped."""
    text = (
        "年假为15天。可以结转吗？可以！\nSubmit within 30 days. Then wait!\n1. Log in to Expensify."
    )
    assert split_sentences(text) == [
        "年假为15天。",
        "可以结转吗？",
        "可以！",
        "Submit within 30 days.",
        "Then wait!",
        "Log in to Expensify.",
    ]


def test_decimal_numbers_do_not_end_a_sentence() -> None:
    """'USD 0.67 per mile' stays one sentence (no space after the dot)."""
    assert split_sentences("Mileage is USD 0.67 per mile. Keep a log.") == [
        "Mileage is USD 0.67 per mile.",
        "Keep a log.",
    ]


def test_headings_are_kept_whole() -> None:
    """A Markdown heading is one item, '#' included, so the answerer can tell it apart."""
    assert split_sentences("## How to submit. A claim\nBody.") == [
        "## How to submit. A claim",
        "Body.",
    ]


def test_sentence_pieces_cover_the_text_exactly() -> None:
    """The splitter rejoins pieces, so they must concatenate back to the input."""
    text = "第一句。第二句！Third one. Fourth?\n\n1. Step one.\n2. Step two."
    pieces = sentence_pieces(text)
    assert "".join(pieces) == text
    assert "1. " not in pieces  # never cut right after a list number


def test_english_terms_stem_and_drop_stopwords() -> None:
    """Plural, -ing and -ed forms meet; function words disappear."""
    assert english_terms("How do I submit my expenses claims") == ["submit", "expense", "claim"]
    assert stem("booking") == stem("book") == "book"
    assert stem("approved") == stem("approving")
    assert stem("class") == "class"


def test_has_cjk() -> None:
    """Chinese is detected; Latin text and full-width digits alone are not Chinese."""
    assert has_cjk("公司的年假政策")
    assert not has_cjk("annual leave １２３")


def test_splitter_chunks_chinese_at_sentence_ends() -> None:
    """A long Chinese paragraph is split between sentences, never inside one."""
    sentence = "员工每年享有十五天带薪年假，需要提前五个工作日申请。"
    text = sentence * 40
    from llama_index.core.schema import Document

    nodes = make_splitter(chunk_size=128, chunk_overlap=0).get_nodes_from_documents(
        [Document(text=text)]
    )
    assert len(nodes) > 2
    for node in nodes:
        body = node.get_content()
        assert body.endswith("。"), body[-10:]
