
"""RagService on the local backend over the ingested sample handbook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from llama_index.core import Settings as LlamaSettings
from llama_index.core.utils import get_tokenizer

from rag_core.configuration import build_service, ingest_config
from rag_core.evaluate import load_eval_set
from rag_core.ingest import ingest
from rag_core.schemas import BatchRequest, QueryRequest
from rag_core.service import RagService
from ragward.errors import NotFound
from ragward.settings import load_settings

CALLER = {"tenant": "acme", "subject": "alice", "request_id": "req-1"}


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("rag-service")
    ingest(ingest_config(load_settings(data_dir=data)), [], None, sample=True, show_progress=False)
    return data


@pytest.fixture(scope="module")
async def service(sample_dir: Path) -> AsyncIterator[RagService]:
    svc = build_service(load_settings(data_dir=sample_dir))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def test_demo_questions_have_the_right_source_first(service: RagService) -> None:
    """The two demo questions are answered from the right handbook page, with its figures."""
    zh = await service.query(QueryRequest(question="公司的年假政策是什么?"), **CALLER)
    assert zh.sources[0].metadata["file_name"] == "zh-annual-leave.md"
    assert "15 天" in zh.answer
    en = await service.query(QueryRequest(question="How do I submit an expense claim?"), **CALLER)
    assert en.sources[0].metadata["file_name"] == "en-expense-reimbursement.md"
    assert "Expensify" in en.answer
    assert en.request_id == "req-1" and len(en.sources) == 3


async def test_usage_counts_real_tokens_at_zero_cost(service: RagService) -> None:
    """Local usage: the question's tiktoken count as embedding tokens, the answer's as
    completion tokens, the prompt the answerer read as prompt tokens; cost 0."""
    question = "How long must my password be?"
    result = await service.query(QueryRequest(question=question), **CALLER)
    tokenizer = get_tokenizer()
    usage = result.usage
    assert usage.embedding_tokens == len(tokenizer(question))
    assert usage.completion_tokens == len(tokenizer(result.answer))
    context = sum(len(tokenizer(s.text)) for s in result.sources)
    assert usage.prompt_tokens > context  # the sources plus the instructions around them
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens + (
        usage.embedding_tokens
    )
    assert usage.cost_usd == 0.0


async def test_fifty_concurrent_questions_each_get_their_own_sources_and_tokens(
    service: RagService,
) -> None:
    """50 distinct questions at once: every answer equals the one the same question
    gets alone — sources, answer and token counts — so nothing leaks between requests."""
    items = load_eval_set()[:50]
    assert len({i["question"] for i in items}) == 50

    async def ask(question: str, rid: str) -> object:
        return await service.query(
            QueryRequest(question=question), tenant="t", subject="s", request_id=rid
        )

    alone = [await ask(i["question"], f"seq-{n}") for n, i in enumerate(items)]
    together = await asyncio.gather(
        *(ask(i["question"], f"par-{n}") for n, i in enumerate(items))
    )
    for n, (item, one, many) in enumerate(zip(items, alone, together, strict=True)):
        assert many.request_id == f"par-{n}"
        assert [s.id for s in many.sources] == [s.id for s in one.sources]
        assert many.answer == one.answer
        assert many.usage == one.usage
        files = [s.metadata["file_name"] for s in many.sources]
        assert item["source"] in files, (item["question"], files)
    assert len({r.usage.embedding_tokens for r in together}) > 5  # really different questions


async def test_batch_answers_in_order_with_the_batch_request_id(service: RagService) -> None:
    """A batch answers each question (in order) from one index version."""
    questions = [
        "公司每年有免费体检吗？", "What is the yearly learning budget?", "出差补贴每天多少钱？",
    ]
    batch, version = await service.query_batch_with_version(
        BatchRequest(questions=questions, top_k=2), **CALLER
    )
    assert version == service.index_version("default")
    assert [r.sources[0].metadata["file_name"] for r in batch.results] == [
        "zh-benefits.md", "en-benefits.md", "zh-business-travel.md",
    ]
    assert all(len(r.sources) == 2 and r.request_id == "req-1" for r in batch.results)


async def test_unknown_index_is_not_found(service: RagService) -> None:
    """Asking an index that does not exist raises NotFound (404), not a 500."""
    with pytest.raises(NotFound):
        await service.query(QueryRequest(question="hi", index="nope"), **CALLER)


async def test_index_info_and_readiness(service: RagService) -> None:
    """indexes() describes the loaded version; the service is ready once 'default' loaded."""
    [info] = service.indexes()
    assert info.name == "default" and info.documents == 16 and info.chunks > 16
    assert info.model == "local:local-hash-v1-8192"
    assert service.ready and service.not_ready_reason is None


async def test_llamaindex_global_settings_are_never_set(service: RagService) -> None:
    """Collaborators are passed in: LlamaIndex's global Settings stay empty."""
    await service.query(QueryRequest(question="VPN"), **CALLER)
    assert LlamaSettings._llm is None
    assert LlamaSettings._embed_model is None
    assert LlamaSettings._callback_manager is None


async def test_not_ready_without_an_index(tmp_path: Path) -> None:
    """With nothing ingested the service starts but says why it is not ready."""
    svc = build_service(load_settings(data_dir=tmp_path))
    await svc.start()
    try:
        assert not svc.ready
        assert "ragward ingest" in (svc.not_ready_reason or "")
    finally:
        await svc.stop()
