"""bge-small, one model per language: English text through bge-small-en-v1.5, Chinese
through bge-small-zh-v1.5 (BAAI, MIT; ONNX files from :mod:`rag_core.models`).

Each is a retrieval model of its own language, trained on question-passage pairs, and
that is what USE multilingual v3 lacks: on ``make eval`` it finds the passage for
paraphrases that share no word with it where USE does not ("plug in a memory stick"
→ the USB rule). Neither compares across languages, so a text's vector has one block
per language and only its own language's block is filled::

    [ en block (384) | zh block (512) ]   English text: [bge_en(text), 0]

An English question therefore scores a Chinese chunk 0 here; the USE part that
:mod:`rag_core.fused_encoder` puts beside these blocks still carries the cross-lingual
match. A text goes by :func:`~rag_core.text.is_chinese`; any other language takes
the English model, which knows Latin-script words best.

bge is asymmetric like e5: a question gets the model's retrieval instruction in front
(its model card's prefix for short queries), a passage nothing. CLS pooling, unit
vectors, as the model card says. ONNX Runtime on one thread per model, for the reason
:mod:`rag_core.sentence_encoder` gives; inputs past 512 tokens are truncated (a chunk
is about 200).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag_core.models import BGE_EN, BGE_ZH, ModelFiles
from rag_core.text import is_chinese

MAX_TOKENS = 512
BATCH = 16


@dataclass(frozen=True)
class Block:
    files: ModelFiles
    dim: int
    query_prefix: str  # from the model card: the instruction for short retrieval queries


EN = Block(BGE_EN, 384, "Represent this sentence for searching relevant passages: ")
ZH = Block(BGE_ZH, 512, "为这个句子生成表示以用于检索相关文章：")  # noqa: RUF001 (the card's colon)
DIM = EN.dim + ZH.dim


@functools.cache
def _session(files: ModelFiles, directory: Path) -> tuple[Any, Any, list[str]]:
    import onnxruntime as ort  # a 20 MB runtime: imported only by who embeds with it
    from tokenizers import Tokenizer

    onnx_name, tokenizer_name = files.members
    tokenizer = Tokenizer.from_file(str(directory / tokenizer_name))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(directory / onnx_name), options, providers=["CPUExecutionProvider"]
    )
    return tokenizer, session, [i.name for i in session.get_inputs()]


def load(directory: Path) -> None:
    """Both models, now (a few seconds): at start-up, not on the first question of each
    language (the start-up warm-up asks in one language only)."""
    for block in (EN, ZH):
        _session(block.files, directory)


def _embed(block: Block, texts: list[str], directory: Path) -> np.ndarray:
    """(len(texts), block.dim) unit rows: the CLS token's last hidden state."""
    tokenizer, session, inputs = _session(block.files, directory)
    rows = np.empty((len(texts), block.dim), dtype=np.float32)
    for start in range(0, len(texts), BATCH):
        encoded = tokenizer.encode_batch(texts[start:start + BATCH])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.array(
            [e.attention_mask for e in encoded], dtype=np.int64)}
        if "token_type_ids" in inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        cls = session.run(None, feeds)[0][:, 0]
        rows[start:start + len(encoded)] = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    return rows


def encode(texts: list[str], kind: Literal["query", "passage"], directory: Path) -> np.ndarray:
    """(len(texts), DIM) float32: each row its language's block filled (a unit vector),
    the other block zero; an empty text is the zero row. ``directory``: the model files
    (rag_core.models)."""
    rows = np.zeros((len(texts), DIM), dtype=np.float32)
    chinese = [is_chinese(t) for t in texts]
    for block, columns, wanted in ((EN, slice(0, EN.dim), False), (ZH, slice(EN.dim, DIM), True)):
        present = [i for i, t in enumerate(texts) if t.strip() and chinese[i] == wanted]
        if present:
            prefix = block.query_prefix if kind == "query" else ""
            rows[present, columns] = _embed(
                block, [prefix + texts[i] for i in present], directory)
    return rows
