"""The default offline configuration end to end: USE multilingual v3, dense, re-scored by
sentence vectors and the question's language (rag_core/rerank.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_core.configuration import build_service, ingest_config
from rag_core.ingest import ingest
from rag_core.rerank import FILE_NAME as SENTENCES_FILE
from rag_core.schemas import QueryRequest
from rag_core.sentence_encoder import encode
from rag_core.store import read_current, version_dir
from ragward.errors import NotFound
from ragward.settings import Settings, load_settings

DOCS = {
    "leave.md": "# Leave\n\nFull-time employees receive 25 days of paid annual leave per year.",
    "security.md": "# Security\n\nPasswords must be at least 14 characters long.",
    "travel.md": "# 差旅\n\n出差住宿标准：北京、上海每晚不超过 600 元。",
}


def _settings(tmp_path: Path, **overrides: str) -> Settings:
    return load_settings(data_dir=tmp_path, llm="local", **overrides)


async def _top_files(
    settings: Settings, tenant: str | None, asked: list[tuple[str, str]],
    model: str = "local:local-use-m3",
) -> list[str]:
    """The top source's file of each question asked of index "hr" by ``tenant``; checks
    the index was built with ``model``."""
    service = build_service(settings)
    await service.start()
    try:
        assert service.indexes(tenant or "t")[0].model == model
        top = []
        for question, _ in asked:
            result = await service.query(QueryRequest(question=question, index="hr", top_k=1),
                                         tenant=tenant or "t", subject="s", request_id="r")
            top.append(str(result.sources[0].metadata["file_name"]))
        return top
    finally:
        await service.stop()


def test_vectors_are_unit_rows_and_empty_text_is_zero() -> None:
    """512-dimensional unit rows; a blank text embeds to the zero row (no model call)."""
    rows = encode(["How much vacation do I get?", "   ", "年假有几天"])
    assert rows.shape == (3, 512)
    assert np.allclose(np.linalg.norm(rows[[0, 2]], axis=1), 1.0, atol=1e-4)
    assert not rows[1].any()


def test_meaning_not_words_ranks_the_answer_first() -> None:
    """A question sharing no word with its answer is nearer to it than to the others,
    in English and across to Chinese."""
    question, *docs = encode([
        "How much vacation does a regular staffer get?",
        "Full-time employees receive 25 days of paid annual leave per year.",
        "Passwords must be at least 14 characters long.",
        "出差住宿标准：北京、上海每晚不超过 600 元。",
    ])
    scores = [float(question @ d) for d in docs]
    assert scores[0] == max(scores)


async def test_default_configuration_answers_paraphrases(tmp_path: Path) -> None:
    """With nothing configured but the offline backend, ingest embeds with USE-m3 (recorded
    in the manifest as local:local-use-m3), the service retrieves dense, and paraphrased
    questions in both languages find their documents."""
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = _settings(tmp_path, local_embedding="use-m3", retrieval="auto")
    ingest(ingest_config(settings), [corpus], "hr", owner="acme", show_progress=False)
    assert await _top_files(settings, "acme", [
        ("How much vacation does a regular staffer get?", "leave.md"),
        ("What minimum length applies to login secrets?", "security.md"),
        ("去外地办事晚上住宾馆最多花多少？", "travel.md"),
    ]) == ["leave.md", "security.md", "travel.md"]

    hashed = build_service(_settings(tmp_path, local_embedding="hashed"))
    await hashed.start()
    try:
        with pytest.raises(NotFound, match="re-ingest"):
            await hashed.query(QueryRequest(question="vacation", index="hr"),
                               tenant="acme", subject="s", request_id="r")
    finally:
        await hashed.stop()


@pytest.mark.parametrize(("embedding", "width"), [("use-m3-bge", 512 + 384 + 512),
                                                   ("use-m3-e5", 512 + 384)])
async def test_the_fused_embedding_end_to_end(tmp_path: Path, embedding: str, width: int) -> None:
    """RAGWARD_LOCAL_EMBEDDING=use-m3-bge (the default) or use-m3-e5: ingest records
    local:local-<embedding>, keeps the chunks' sentence vectors at the fused width, and
    the service answers paraphrases in both languages from the fused vectors."""
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = _settings(tmp_path, local_embedding=embedding, retrieval="auto")
    ingest(ingest_config(settings), [corpus], "hr", show_progress=False)
    version = read_current(settings.indexes_dir, "hr")
    assert version
    with np.load(version_dir(settings.indexes_dir, "hr", version) / SENTENCES_FILE) as saved:
        assert saved["matrix"].shape[1] == width
    assert await _top_files(settings, None, [
        ("How much vacation does a regular staffer get?", "leave.md"),
        ("What minimum length applies to login secrets?", "security.md"),
        ("去外地办事晚上住宾馆最多花多少？", "travel.md"),
    ], model=f"local:local-{embedding}") == ["leave.md", "security.md", "travel.md"]


async def test_a_question_finds_its_own_languages_twin_in_a_bilingual_handbook(
    tmp_path: Path,
) -> None:
    """The bundled handbook has every policy in English and in Chinese, which USE-m3 puts
    at nearly the same point: paraphrased questions get the document in their own
    language first (without the second stage most English ones got the Chinese twin),
    and the version carries its chunks' sentence vectors."""
    settings = _settings(tmp_path, local_embedding="use-m3", retrieval="auto")
    ingest(ingest_config(settings), [], "hr", sample=True, show_progress=False)
    version = read_current(settings.indexes_dir, "hr")
    assert version
    assert (version_dir(settings.indexes_dir, "hr", version) / SENTENCES_FILE).is_file()
    asked = [
        ("How much vacation does a regular staffer get in twelve moons?", "en-annual-leave.md"),
        ("Can I roll vacation I didn't take into January?", "en-annual-leave.md"),
        ("What minimum length applies to login secrets?", "en-information-security.md"),
        ("一周能在家上班几天？", "zh-remote-work.md"),
    ]
    assert await _top_files(settings, None, asked) == [expected for _, expected in asked]
