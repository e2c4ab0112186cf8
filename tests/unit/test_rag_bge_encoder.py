"""The default offline embedding (use-m3-bge): bge-small per language in its own block
(rag_core/bge_encoder.py), fused with USE-m3 (rag_core/fused_encoder.py). Runs the real
ONNX models that ``ragward models fetch`` put in RAGWARD_MODEL_DIR (make test fetches
them first)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_core import bge_encoder
from rag_core.backends import build_backend, build_local_backend
from rag_core.bge_encoder import EN, ZH
from rag_core.configuration import backend_config
from rag_core.fused_encoder import BGE, FusedEncoderEmbedding, fused_encode
from rag_core.models import MODELS as MODEL_FILES
from rag_core.models import model_dir
from rag_core.sentence_encoder import DIM as USE_DIM
from rag_core.sentence_encoder import encode as use_encode
from ragward.errors import ConfigError
from ragward.settings import load_settings
from tests.loop_turns import loop_turns

EN_BLOCK, ZH_BLOCK = slice(0, EN.dim), slice(EN.dim, EN.dim + ZH.dim)
MODELS = model_dir(load_settings().model_dir)  # RAGWARD_MODEL_DIR, as make test fetched it


def test_each_text_fills_its_own_languages_block_with_a_unit_vector() -> None:
    """English text: a unit vector in the English block and zeros in the Chinese one;
    Chinese text (a Latin product name inside included) the other way round; a blank
    text is the zero row."""
    rows = bge_encoder.encode(
        ["How many days of annual leave do I get?", "连接公司 VPN GlobalProtect 的步骤", "  "],
        "passage", MODELS,
    )
    assert rows.shape == (3, bge_encoder.DIM) == (3, 384 + 512)
    assert abs(float(np.linalg.norm(rows[0, EN_BLOCK])) - 1.0) < 1e-4
    assert not rows[0, ZH_BLOCK].any()
    assert abs(float(np.linalg.norm(rows[1, ZH_BLOCK])) - 1.0) < 1e-4
    assert not rows[1, EN_BLOCK].any()
    assert not rows[2].any()


def test_a_question_gets_the_models_retrieval_instruction_and_a_passage_none() -> None:
    """bge is asymmetric: the query form is the passage form of the instruction-prefixed
    text, in each language, and differs from the plain passage form."""
    for text, block in (("Can I work from a cafe?", EN), ("能在咖啡馆办公吗？", ZH)):
        query = bge_encoder.encode([text], "query", MODELS)[0]
        prefixed = bge_encoder.encode([block.query_prefix + text], "passage", MODELS)[0]
        passage = bge_encoder.encode([text], "passage", MODELS)[0]
        assert np.allclose(query, prefixed, atol=1e-5)
        assert float(query @ passage) < 0.99


def test_a_paraphrase_finds_its_answer_in_its_own_language() -> None:
    """"Plug in a memory stick" shares no word with the USB rule. USE-m3 alone puts the
    rule's translation first (its vectors are trained to make translations meet); the
    fused vectors rank the rule in the question's own language first, in English and in
    Chinese."""
    passages = [
        "USB storage devices are blocked on company laptops; request an exception from IT.",
        "Employees enrolled in the health plan may claim gym membership up to 300 a year.",
        "Performance reviews happen twice a year, in June and in December.",
        "公司笔记本电脑禁止使用 U 盘等移动存储设备，如需例外请向 IT 申请。",
        "参加健康计划的员工每年可报销健身房会费，上限 300 元。",
    ]
    questions = ["Can I plug in a memory stick?", "能插优盘拷文件吗？"]
    assert (use_encode(questions) @ use_encode(passages).T).argmax(axis=1).tolist() == [3, 0]
    fused = (fused_encode(questions, "query", BGE, MODELS)
             @ fused_encode(passages, "passage", BGE, MODELS).T)
    assert fused.argmax(axis=1).tolist() == [0, 3]


def test_fused_rows_average_the_use_and_bge_cosines_and_keep_languages_apart() -> None:
    """use-m3-bge rows are 1,408-wide unit vectors whose dot product is 0.1 * cos_use +
    0.9 * cos_bge; across languages the bge blocks do not overlap, so only the USE part
    (the cross-lingual one) scores an English question against a Chinese passage."""
    texts = ["Who approves a large expense?", "大额报销需要谁审批？"]
    fused = fused_encode(texts, "passage", BGE, MODELS)
    assert fused.shape == (2, USE_DIM + bge_encoder.DIM)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    use, bge = use_encode(texts), bge_encoder.encode(texts, "passage", MODELS)
    expected = BGE.use_weight * (use @ use.T) + (1 - BGE.use_weight) * (bge @ bge.T)
    assert np.allclose(fused @ fused.T, expected, atol=1e-5)
    assert np.isclose(float(fused[0] @ fused[1]), BGE.use_weight * float(use[0] @ use[1]),
                      atol=1e-5)


def test_it_is_the_default_and_names_itself_in_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set, the local backend embeds with use-m3-bge, and an index built with
    it records local-use-m3-bge (so a later switch of embedding asks for a re-ingest)."""
    monkeypatch.delenv("RAGWARD_LOCAL_EMBEDDING", raising=False)  # the suite's hashed default
    assert load_settings(llm="local").local_embedding == "use-m3-bge"
    backend = build_local_backend(model_dir=MODELS)
    assert isinstance(backend.embed_model, FusedEncoderEmbedding)
    assert backend.embedding_model == "local-use-m3-bge"


def test_without_the_models_the_configuration_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An empty RAGWARD_MODEL_DIR: building the backend raises ConfigError naming the
    setting, the directory, the missing files and the command that fetches them."""
    monkeypatch.setenv("RAGWARD_MODEL_DIR", str(tmp_path))
    monkeypatch.delenv("RAGWARD_LOCAL_EMBEDDING", raising=False)
    settings = load_settings(llm="local")
    with pytest.raises(ConfigError, match=(
        r"RAGWARD_LOCAL_EMBEDDING=use-m3-bge needs the bge models in .*bge-small-en-v1\.5\.onnx"
        r".*ragward models fetch"
    )):
        build_backend(backend_config(settings))


def test_a_model_file_that_is_not_the_pinned_one_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All four files present, but one is not the pinned file (here a copy cut short): the
    backend is refused at start with a ConfigError naming that file and the fetch command,
    instead of a model that fails, or answers wrongly, on the first question."""
    for name in (m for model in MODEL_FILES for m in model.members):
        (tmp_path / name).symlink_to(MODELS / name)
    cut = tmp_path / "bge-small-zh-v1.5-tokenizer.json"
    cut.unlink()
    cut.write_bytes((MODELS / cut.name).read_bytes()[:1000])
    with pytest.raises(ConfigError, match=(
        r"missing or not the pinned file: bge-small-zh-v1\.5-tokenizer\.json: "
        r"run 'ragward models fetch'"
    )):
        build_local_backend(model_dir=tmp_path)


def test_both_models_are_loaded_at_start_up_not_on_the_first_question() -> None:
    """Building the embedding loads the English and the Chinese model: the start-up
    warm-up asks one question in one language, and the first question in the other would
    otherwise wait seconds for its model."""
    bge_encoder._session.cache_clear()
    FusedEncoderEmbedding("bge", model_dir=MODELS)
    assert bge_encoder._session.cache_info().currsize == 2


async def test_embedding_a_question_leaves_the_event_loop_free() -> None:
    """rag-core awaits the query embedding on its event loop: the model's 15-20 ms run in a
    worker thread, so a task on the same loop keeps running while questions are embedded
    (run inline, as before, it would not get one turn), and the vectors are the same."""
    model = FusedEncoderEmbedding("bge", model_dir=MODELS)
    model.get_query_embedding("warm the sessions up")
    questions = ["Can I work from a cafe?", "能在咖啡馆办公吗？", "Who approves a big expense?"]
    async with loop_turns() as turns:
        vectors = [await model.aget_query_embedding(q) for q in questions]
    assert turns.count >= len(questions), turns.count
    assert np.allclose(vectors, [model.get_query_embedding(q) for q in questions], atol=1e-6)
