"""The official ``openai`` SDK against `ragward gateway` + `ragward rag-core` as real OS
processes, on real Kafka and Redis: the chat stream crosses the process boundary
(rag_core's NDJSON stream, then the gateway's SSE)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.devservices import free_port
from ragward.settings import load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import make_token
from tests.integration.test_gateway_processes import ragward_process as process
from tests.integration.test_gateway_processes import wait_healthy

MESSAGES: Any = [{"role": "user", "content": "How do I submit an expense claim?"}]


@pytest.fixture(scope="module")
async def gateway_url(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str
) -> AsyncIterator[str]:
    root = tmp_path_factory.mktemp("openai-processes")
    unique = uuid.uuid4().hex[:10]
    ingest(ingest_config(load_settings(data_dir=root / "rag")), [], sample=True,
           show_progress=False)
    rag_port, gw_port = free_port(), free_port()
    common = {"RAGWARD_INTERNAL_TOKEN": "internal-" + unique, "RAGWARD_LOG_LEVEL": "warning"}
    rag_env = {**common, "RAGWARD_DATA_DIR": str(root / "rag")}
    gw_env = {
        **common, "RAGWARD_DATA_DIR": str(root / "gw"), "RAGWARD_JWT_SECRET": TEST_SECRET,
        "RAGWARD_RAG_CORE_URL": f"http://127.0.0.1:{rag_port}",
        "RAGWARD_REDIS_URL": redis_url, "RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RAGWARD_TOPIC_AUDIT": f"op.audit.{unique}", "RAGWARD_TOPIC_USAGE": f"op.usage.{unique}",
        "RAGWARD_QUOTAS": '{"tenants": {"poor": {"tokens_per_day": 50}}}',
    }
    with process(["rag-core", "--port", str(rag_port)], rag_env, root / "rag.log") as rag, \
         process(["gateway", "--port", str(gw_port)], gw_env, root / "gw.log") as gw:
        await wait_healthy(f"http://127.0.0.1:{rag_port}", rag, root / "rag.log")
        url = f"http://127.0.0.1:{gw_port}"
        await wait_healthy(url, gw, root / "gw.log")
        yield url


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway_url + "/v1", max_retries=0,
                                  api_key=make_token(tenant=f"p-{uuid.uuid4().hex[:8]}")) as c:
        yield c


async def test_async_sdk_models_completion_and_stream_across_processes(
    client: openai.AsyncOpenAI,
) -> None:
    """models.list() names rag_core's index; the streamed answer (with include_usage)
    equals the non-streamed one and carries citations on its finish chunk."""
    assert [m.id async for m in client.models.list()] == ["default"]
    stream = await client.chat.completions.create(
        model="default", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Expensify" in text
    assert chunks[-1].choices == [] and chunks[-1].usage and chunks[-1].usage.total_tokens > 0
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert (finish[0].model_extra or {})["citations"]
    completion = await client.chat.completions.create(model="default", messages=MESSAGES)
    assert completion.choices[0].message.content == text


async def test_sync_sdk_stream_and_completion_across_processes(gateway_url: str) -> None:
    """The sync client does the same (in a thread: the SDK blocks)."""

    def run() -> tuple[str, str | None]:
        with openai.OpenAI(base_url=gateway_url + "/v1", max_retries=0,
                           api_key=make_token(tenant="sync-tenant")) as sync:
            streamed = "".join(
                c.choices[0].delta.content or ""
                for c in sync.chat.completions.create(model="default", messages=MESSAGES,
                                                      stream=True) if c.choices)
            whole = sync.chat.completions.create(model="default", messages=MESSAGES)
            return streamed, whole.choices[0].message.content

    streamed, whole = await asyncio.to_thread(run)
    assert streamed == whole and "Expensify" in streamed


async def test_bad_token_and_exhausted_quota_raise_sdk_errors_across_processes(
    gateway_url: str,
) -> None:
    """openai.AuthenticationError for a bad token, openai.RateLimitError for a tenant
    whose budget cannot hold the reservation (streamed too)."""
    async with openai.AsyncOpenAI(base_url=gateway_url + "/v1", max_retries=0,
                                  api_key="wrong") as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()
    async with openai.AsyncOpenAI(base_url=gateway_url + "/v1", max_retries=0,
                                  api_key=make_token(tenant="poor")) as poor:
        with pytest.raises(openai.RateLimitError):
            await poor.chat.completions.create(model="default", messages=MESSAGES, stream=True)


async def test_llamaindex_openailike_across_processes(gateway_url: str) -> None:
    """LlamaIndex's OpenAILike, plain and streamed, through gateway and rag-core processes."""
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model="default", api_base=gateway_url + "/v1", is_chat_model=True,
                     api_key=make_token(tenant=f"li-{uuid.uuid4().hex[:8]}"), max_retries=0,
                     timeout=30)
    question = [ChatMessage(role="user", content="How do I submit an expense claim?")]
    answer = await llm.achat(question)
    streamed = "".join([r.delta or "" async for r in await llm.astream_chat(question)])
    assert "Expensify" in str(answer.message.content) and streamed == answer.message.content
