"""The openai backend against a real local OpenAI-compatible HTTP server (tests/openai_server.py).

Pins: usage and cost are what the server reported; 429 + Retry-After and one 500
are retried by the SDK and succeed; a stopped server is a 503 and a hanging one a
504, both within RAGWARD_LLM_TIMEOUT_S; concurrent requests keep their own usage.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from rag_core import ingest_cli
from rag_core.app import create_app
from rag_core.configuration import build_service, ingest_config
from rag_core.ingest import ingest
from rag_core.pricing import Pricing
from rag_core.schemas import QueryRequest
from rag_core.service import RagService
from ragward.errors import NotFound, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ragward.settings import Settings, load_settings
from tests.openai_server import OpenAIStub

MODEL, EMBEDDING = "gpt-4o-mini", "text-embedding-3-small"
CALLER = {"tenant": "acme", "subject": "alice", "request_id": "req-oa"}


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(dim=64) as server:
        yield server


def openai_settings(data_dir: Path, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "llm": "openai",
        "openai_base_url": base_url,
        "openai_api_key": "sk-test-not-a-real-key",
        "openai_model": MODEL,
        "openai_embedding_model": EMBEDDING,
        "llm_timeout_s": 5.0,
        "llm_max_retries": 2,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="module")
def data_dir(stub: OpenAIStub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample handbook embedded through the server (two batched embedding calls)."""
    data = tmp_path_factory.mktemp("rag-openai")
    result = ingest(ingest_config(openai_settings(data, stub.base_url)), [], None, sample=True,
                    show_progress=False)
    batches = stub.seen("embeddings")
    assert result.embedding_tokens == sum(r.usage["total_tokens"] for r in batches)
    return data


@pytest.fixture
def fresh(stub: OpenAIStub) -> Iterator[OpenAIStub]:
    stub.clear()
    stub.extra_tokens = 0
    yield stub
    stub.clear()


async def started(settings: Settings) -> RagService:
    service = build_service(settings)
    await service.start()
    return service


@pytest.fixture
async def service(data_dir: Path, fresh: OpenAIStub) -> AsyncIterator[RagService]:
    svc = await started(openai_settings(data_dir, fresh.base_url))
    try:
        yield svc
    finally:
        await svc.stop()


def dead_url() -> str:
    """A loopback port on which nothing listens (a server that was stopped)."""
    with OpenAIStub() as gone:
        url = gone.base_url
    return url


async def test_usage_and_cost_equal_what_the_server_reported(
    service: RagService, fresh: OpenAIStub
) -> None:
    """prompt/completion tokens from the chat answer's usage, embedding tokens from the
    embeddings answer's usage (not client-side estimates), priced from the table."""
    fresh.extra_tokens = 7  # makes server counts differ from any local tokenizer
    result = await service.query(
        QueryRequest(question="How do I submit an expense claim?"), **CALLER
    )
    [chat] = fresh.seen("chat")
    [emb] = fresh.seen("embeddings")
    assert result.usage.prompt_tokens == chat.usage["prompt_tokens"]
    assert result.usage.completion_tokens == chat.usage["completion_tokens"]
    assert result.usage.embedding_tokens == emb.usage["total_tokens"]
    assert result.usage.total_tokens == (
        chat.usage["prompt_tokens"] + chat.usage["completion_tokens"] + emb.usage["total_tokens"]
    )
    expected = (
        chat.usage["prompt_tokens"] * 0.15 + chat.usage["completion_tokens"] * 0.60
        + emb.usage["total_tokens"] * 0.02
    ) / 1_000_000
    assert result.usage.cost_usd == pytest.approx(expected, rel=1e-9)
    assert result.answer.startswith("Stub answer about: How do I submit an expense claim?")
    assert chat.body["model"] == MODEL and emb.body["model"] == EMBEDDING
    assert chat.headers["Authorization"] == "Bearer sk-test-not-a-real-key"
    assert result.sources[0].metadata["file_name"] == "en-expense-reimbursement.md"


async def test_pricing_file_overrides_the_table(
    data_dir: Path, fresh: OpenAIStub, tmp_path: Path
) -> None:
    """RAGWARD_PRICING_FILE prices flow into usage.cost_usd."""
    prices = tmp_path / "prices.toml"
    prices.write_text(f'[models."{MODEL}"]\ninput = 1000000\noutput = 0\n'
                      f'[models."{EMBEDDING}"]\ninput = 0\n')
    svc = await started(openai_settings(data_dir, fresh.base_url, pricing_file=prices))
    try:
        result = await svc.query(QueryRequest(question="VPN"), **CALLER)
    finally:
        await svc.stop()
    assert result.usage.cost_usd == pytest.approx(float(result.usage.prompt_tokens))


async def test_429_with_retry_after_is_retried_and_succeeds(
    service: RagService, fresh: OpenAIStub
) -> None:
    """The SDK waits the server's Retry-After, tries again, and the query succeeds."""
    fresh.fail_next("429", endpoint="chat", retry_after=1)
    started_at = time.monotonic()
    result = await service.query(QueryRequest(question="How long must my password be?"), **CALLER)
    assert result.answer.startswith("Stub answer")
    first, second = fresh.seen("chat")
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.9  # honoured Retry-After: 1 (not a ~0.5 s default backoff)
    assert second.headers.get("x-stainless-retry-count") == "1"
    assert time.monotonic() - started_at < 4
    assert result.usage.prompt_tokens == second.usage["prompt_tokens"]


async def test_one_500_is_retried_with_backoff(service: RagService, fresh: OpenAIStub) -> None:
    """A transient 5xx on the embedding call is retried; the answer still arrives."""
    fresh.fail_next("500", endpoint="embeddings")
    result = await service.query(QueryRequest(question="公司的年假政策是什么?"), **CALLER)
    assert [r.status for r in fresh.seen("embeddings")] == [500, 200]
    assert result.sources


async def test_persistent_500_is_a_502_after_the_retries(
    service: RagService, fresh: OpenAIStub
) -> None:
    """When every attempt fails (1 + llm_max_retries), the error is UpstreamError (502)."""
    fresh.fail_next("500", endpoint="chat", times=3)
    with pytest.raises(UpstreamError) as info:
        await service.query(QueryRequest(question="expense"), **CALLER)
    assert info.value.status == 502 and "HTTP 500" in info.value.message
    assert len(fresh.seen("chat")) == 3


async def test_stopped_server_is_503_within_the_timeout(data_dir: Path) -> None:
    """Connection refused: retried with backoff, then 503 — well inside the timeout."""
    settings = openai_settings(data_dir, dead_url(), llm_timeout_s=4.0, llm_max_retries=2)
    svc = await started(settings)
    try:
        started_at = time.monotonic()
        with pytest.raises(UpstreamUnavailable) as info:
            await svc.query(QueryRequest(question="expense"), **CALLER)
        assert info.value.status == 503
        assert time.monotonic() - started_at < settings.llm_timeout_s
    finally:
        await svc.stop()


async def test_hanging_server_is_504_at_the_timeout(
    data_dir: Path, fresh: OpenAIStub
) -> None:
    """A server that never answers: UpstreamTimeout (504) at RAGWARD_LLM_TIMEOUT_S, no hang."""
    fresh.fail_next("hang", endpoint="chat", times=5)
    svc = await started(openai_settings(data_dir, fresh.base_url, llm_timeout_s=1.0))
    try:
        started_at = time.monotonic()
        with pytest.raises(UpstreamTimeout) as info:
            await svc.query(QueryRequest(question="expense"), **CALLER)
        elapsed = time.monotonic() - started_at
    finally:
        await svc.stop()
    assert info.value.status == 504
    assert 0.9 <= elapsed < 2.0


async def test_http_statuses_for_upstream_failures(data_dir: Path, fresh: OpenAIStub) -> None:
    """Over HTTP the same failures are 502 and 503 in the contract's error JSON."""
    settings = openai_settings(data_dir, fresh.base_url, llm_max_retries=0)
    async with AsyncTestClient(app=create_app(settings)) as client:
        fresh.fail_next("500", endpoint="chat")
        bad = await client.post("/v1/query", json={"question": "expense"})
        assert bad.status_code == 502 and bad.json()["error"]["code"] == "upstream_error"
        assert "sk-test" not in bad.text
    settings = openai_settings(data_dir, dead_url(), llm_max_retries=0)
    async with AsyncTestClient(app=create_app(settings)) as client:
        down = await client.post("/v1/query", json={"question": "expense"})
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "upstream_unavailable"


async def test_concurrent_queries_each_get_the_usage_of_their_own_calls(
    service: RagService, fresh: OpenAIStub
) -> None:
    """Ten questions at once over HTTP: each answer's usage matches the server's usage
    for that question's own chat and embedding calls."""
    questions = [f"What is rule number {n} about {'leave ' * n}?" for n in range(1, 11)]
    results = await asyncio.gather(
        *(service.query(QueryRequest(question=q), **CALLER) for q in questions)
    )
    chats = {r.body["messages"][-1]["content"].rsplit("Question:", 1)[1].split("\n")[0].strip(): r
             for r in fresh.seen("chat")}
    embeddings = {r.body["input"][0]: r for r in fresh.seen("embeddings")}
    for question, result in zip(questions, results, strict=True):
        assert result.usage.prompt_tokens == chats[question].usage["prompt_tokens"]
        assert result.usage.completion_tokens == chats[question].usage["completion_tokens"]
        assert result.usage.embedding_tokens == embeddings[question].usage["total_tokens"]
    assert len({r.usage.embedding_tokens for r in results}) == 10


def test_ingest_against_a_stopped_server_exits_1(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`ragward ingest` with the provider down: exit 1 with a one-line reason, no index."""
    settings = openai_settings(tmp_path, dead_url(), llm_max_retries=0, llm_timeout_s=2.0)
    args = argparse.Namespace(paths=[], index=None, sample=True)
    assert ingest_cli.main(settings, args) == 1
    assert "unreachable" in capfd.readouterr().err
    assert not (settings.indexes_dir / "default").exists()


def test_pricing_defaults_cover_the_configured_models() -> None:
    """The default models of the openai backend have list prices."""
    pricing = Pricing()
    assert pricing.known(MODEL) and pricing.known(EMBEDDING)


def test_free_port_helper_really_is_closed() -> None:
    """dead_url() points at a port nothing listens on (guards the 503 tests)."""
    port = int(dead_url().rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(1)
        s.connect(("127.0.0.1", port))


async def test_index_built_with_another_embedding_is_refused(
    tmp_path: Path, fresh: OpenAIStub
) -> None:
    """A local-backend index is not queried with OpenAI embeddings (different space):
    the service says why it is not ready, and a query names the fix."""
    ingest(ingest_config(load_settings(data_dir=tmp_path)), [], None, sample=True,
           show_progress=False)
    svc = await started(openai_settings(tmp_path, fresh.base_url))
    try:
        assert not svc.ready
        assert "re-ingest" in (svc.not_ready_reason or "")
        with pytest.raises(NotFound, match="built with embedding 'local:"):
            await svc.query(QueryRequest(question="expense"), **CALLER)
        assert fresh.seen("chat") == []
    finally:
        await svc.stop()
