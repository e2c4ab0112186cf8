"""The official ``openai`` SDK (and LlamaIndex's ``OpenAILike``) against `ragward serve`,
on real Kafka and Redis, with the bundled handbook and the offline backend.

Pins docs/openai.md: chat completions streamed and not, sync and async; models;
citations readable through the SDK objects; OpenAI-shaped errors so the SDK
raises its own classes; the audit trail of a stream (opening and closing events).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.serve import create_serve_app
from ragward.settings import Settings, load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, make_token, serving

EXPENSE = "How do I submit an expense claim?"
LEAVE = [{"role": "user", "content": EXPENSE}]


@pytest.fixture(scope="module")
def serve_settings(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str
) -> Settings:
    unique = uuid.uuid4().hex[:10]
    data = tmp_path_factory.mktemp("openai-serve") / "data"
    settings = load_settings(
        data_dir=data, jwt_secret=TEST_SECRET, kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url, topic_audit=f"oa.audit.{unique}", topic_usage=f"oa.usage.{unique}",
        topic_alerts=f"oa.alerts.{unique}", topic_dead_letter=f"oa.dlq.{unique}",
        quotas={"tenants": {f"poor-{unique}": {"tokens_per_day": 50}}},
    )
    ingest(ingest_config(settings), [], sample=True, show_progress=False)
    return settings


@pytest.fixture(scope="module")
async def url(serve_settings: Settings) -> AsyncIterator[str]:
    async with serving(create_serve_app(serve_settings)) as base:
        yield base


def poor_tenant(settings: Settings) -> str:
    return next(iter(settings.quotas.tenants))


_open: list[openai.AsyncOpenAI | openai.OpenAI] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """filterwarnings=error: every SDK client a test made is closed after it."""
    yield
    while _open:
        client = _open.pop()
        if isinstance(client, openai.AsyncOpenAI):
            await client.close()
        else:
            client.close()


def sdk(url: str, *, api_key: str | None = None, **token: Any) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=api_key or make_token(**token),
                                max_retries=0)
    _open.append(client)
    return client


def sync_sdk(url: str, **token: Any) -> openai.OpenAI:
    client = openai.OpenAI(base_url=url + "/v1", api_key=make_token(**token), max_retries=0)
    _open.append(client)
    return client


async def test_non_streamed_completion_async_and_sync_carry_answer_usage_and_citations(
    url: str,
) -> None:
    """A chat.completion with the handbook's answer, finish_reason, usage, and the sources
    as ``citations`` read through the SDK object (model_extra) — the same from the sync
    client."""
    completion = await sdk(url, tenant="demo").chat.completions.create(
        model="default", messages=LEAVE)  # type: ignore[arg-type]
    assert completion.object == "chat.completion"
    assert completion.model == "default"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and "Expensify" in (choice.message.content or "")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens >= (
        completion.usage.prompt_tokens + completion.usage.completion_tokens)
    citations = (completion.model_extra or {})["citations"]
    assert citations[0]["title"] == "Expense Reimbursement Policy"
    assert citations[0]["metadata"]["file_name"] == "en-expense-reimbursement.md"
    assert {"id", "title", "score", "snippet"} <= set(citations[0])
    assert getattr(completion, "citations") == citations  # attribute access works too  # noqa: B009

    sync = await asyncio.to_thread(
        sync_sdk(url, tenant="demo").chat.completions.create, model="default",
        messages=LEAVE,  # type: ignore[arg-type]
    )
    assert sync.choices[0].message.content == choice.message.content


async def test_stop_ends_the_offline_answer_before_the_sequence_streamed_or_not(
    url: str,
) -> None:
    """``stop`` holds on the offline backend too: the answer is the full answer's text
    before the first stop sequence (which is left out), the same streamed and not — and
    the cached full answer is not served for it (the key covers ``stop``)."""
    client = sdk(url, tenant="demo")
    full = (await client.chat.completions.create(
        model="default", messages=LEAVE)).choices[0].message.content or ""  # type: ignore[arg-type]
    word = "Expensify"
    assert word in full
    stopped = await client.chat.completions.create(
        model="default", messages=LEAVE, stop=[word, "never-in-it"])  # type: ignore[arg-type]
    assert stopped.choices[0].message.content == full[: full.index(word)]
    assert stopped.choices[0].finish_reason == "stop"
    stream = await client.chat.completions.create(
        model="default", messages=LEAVE, stop=word, stream=True)  # type: ignore[arg-type]
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert streamed == full[: full.index(word)]


async def test_stream_with_include_usage_async_and_sync(url: str) -> None:
    """stream=True: role first, content deltas that add up to the non-streamed answer, a
    finish chunk carrying the citations, then the usage chunk with ``choices: []``."""
    client = sdk(url, tenant="stream-first")  # its own tenant: the first answer is no hit
    stream = await client.chat.completions.create(
        model="default", messages=LEAVE, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    whole = (await client.chat.completions.create(
        model="default", messages=LEAVE)).choices[0].message.content  # type: ignore[arg-type]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert (finishing[0].model_extra or {})["citations"][0]["metadata"]["file_name"] == (
        "en-expense-reimbursement.md")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1

    def sync_stream() -> list[Any]:
        return list(sync_sdk(url, tenant="demo").chat.completions.create(
            model="default", messages=LEAVE, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True}))

    sync_chunks = await asyncio.to_thread(sync_stream)  # a cache hit now: usage 0
    assert "".join(c.choices[0].delta.content or "" for c in sync_chunks if c.choices) == whole
    assert sync_chunks[-1].choices == [] and sync_chunks[-1].usage is not None


async def test_stream_without_include_usage_has_no_usage_chunk(url: str) -> None:
    """Clients that index ``choices[0]`` break on a usage chunk: it is sent only on request,
    and the raw stream ends with ``data: [DONE]``."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client, client.stream(
        "POST", "/v1/chat/completions", headers=bearer(tenant="demo"),
        json={"model": "default", "messages": LEAVE, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    import json

    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(chunk["choices"] for chunk in chunks)
    assert not any("usage" in chunk for chunk in chunks)


async def test_models_list_and_retrieve(url: str) -> None:
    """models.list() lists the indexes as models; retrieve takes the index name or
    ``ragward/<index>``; an unknown model is openai.NotFoundError, for chat too."""
    client = sdk(url, tenant="demo")
    models = [m.id async for m in client.models.list()]
    assert "default" in models
    assert (await client.models.retrieve("default")).id == "default"
    assert (await client.models.retrieve("ragward/default")).id == "ragward/default"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-index")
    with pytest.raises(openai.NotFoundError) as raised:
        await client.chat.completions.create(model="no-such-index",
                                             messages=LEAVE)  # type: ignore[arg-type]
    body: Any = raised.value.body
    assert raised.value.status_code == 404 and "no-such-index" in body["message"]


async def test_bad_token_and_missing_role_raise_the_sdk_classes(url: str) -> None:
    """A bad token is openai.AuthenticationError (401), a role without ``query`` is
    openai.PermissionDeniedError (403); both carry OpenAI's error shape and the request
    id."""
    bad = sdk(url, api_key="not-a-jwt")
    with pytest.raises(openai.AuthenticationError) as raised:
        await bad.chat.completions.create(model="default", messages=LEAVE)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()
    assert raised.value.response.headers["x-request-id"] == raised.value.request_id
    err: Any = raised.value.body
    assert err["type"] == "authentication_error" and err["code"] == "invalid_token"
    with pytest.raises(openai.PermissionDeniedError):
        await sdk(url, tenant="demo", roles=["compliance"]).chat.completions.create(
            model="default", messages=LEAVE, stream=True)  # type: ignore[arg-type]


async def test_exhausted_quota_is_rate_limit_error_before_any_stream(
    url: str, serve_settings: Settings
) -> None:
    """A tenant whose day budget cannot hold the reservation gets openai.RateLimitError
    with Retry-After, streamed or not — the 429 comes before any chunk."""
    client = sdk(url, tenant=poor_tenant(serve_settings))
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(
                model="default", messages=LEAVE, stream=stream)  # type: ignore[call-overload]
        assert int(raised.value.response.headers["retry-after"]) >= 1
        err: Any = raised.value.body
        assert err["type"] == "rate_limit_error"


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ({"temperature": 7}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
])
async def test_unsupported_or_invalid_parameters_are_400_naming_the_param(
    url: str, extra: dict[str, Any], param: str
) -> None:
    """What cannot be honoured is refused with openai.BadRequestError whose ``param``
    names it — never silently ignored."""
    body = {"model": "default", "messages": LEAVE, **extra}
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk(url, tenant="demo").chat.completions.create(**body)
    err: Any = raised.value.body
    assert err["param"] == param and err["type"] == "invalid_request_error"


async def test_text_parts_developer_role_and_a_long_history_are_answered(url: str) -> None:
    """Content as text parts and the ``developer`` role are accepted; a history far over
    the memory budget still answers (memory is bounded, not an error)."""
    history: list[dict[str, Any]] = []
    for i in range(300):
        history += [{"role": "user", "content": f"filler question {i} " * 20},
                    {"role": "assistant", "content": f"filler answer {i} " * 20}]
    completion = await sdk(url, tenant="demo").chat.completions.create(
        model="default", messages=[  # type: ignore[list-item]
            {"role": "developer", "content": "Be brief."}, *history,
            {"role": "user", "content": [{"type": "text", "text": "How do I submit "},
                                         {"type": "text", "text": "an expense claim?"}]},
        ])
    assert "Expensify" in (completion.choices[0].message.content or "")


async def test_llamaindex_openailike_chats_and_streams(url: str) -> None:
    """LlamaIndex's OpenAILike client works against the gateway, plain and streamed."""
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    llm = OpenAILike(model="default", api_base=url + "/v1", api_key=make_token(tenant="demo"),
                     is_chat_model=True, max_retries=0, timeout=30)
    answer = await llm.achat([ChatMessage(role="user", content=EXPENSE)])
    assert "Expensify" in str(answer.message.content)
    pieces = [r.delta async for r in await llm.astream_chat(
        [ChatMessage(role="user", content=EXPENSE)])]
    assert "".join(p or "" for p in pieces) == answer.message.content


async def test_a_stream_is_audited_at_its_start_and_at_its_end(url: str) -> None:
    """A streamed answer leaves two audit records: ``phase=start`` (written before the
    status line) and ``phase=end`` with outcome, finish reason, time to first token and
    the tokens; PII in the question is stored only hashed and counted."""
    request_id = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with client.stream(
            "POST", "/v1/chat/completions",
            headers={**bearer(tenant="demo"), "X-Request-ID": request_id},
            json={"model": "default", "stream": True, "messages": [
                {"role": "user", "content": "Mail jane.doe@example.com: how do I submit an "
                 "expense claim?"}]},
        ) as response:
            lines = [line async for line in response.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        compliance = bearer(sub="auditor", tenant="demo", roles=["compliance"])
        async with asyncio.timeout(20):
            while True:
                page = (await client.get(f"/v1/audit?request_id={request_id}",
                                         headers=compliance)).json()
                if len(page["records"]) == 2:
                    break
                await asyncio.sleep(0.1)
    end, start = page["records"]  # newest first
    assert start["chat"]["phase"] == "start" and start["chat"]["outcome"] == "open"
    assert end["chat"]["phase"] == "end" and end["chat"]["outcome"] == "completed"
    assert end["chat"]["finish_reason"] == "stop" and end["chat"]["ttft_us"] > 0
    assert end["chat"]["duration_us"] >= end["chat"]["ttft_us"]
    assert end["chat"]["completion_tokens"] > 0
    assert start["redactions"] == {"EMAIL": 1} and "example.com" not in str(page)
    assert start["action"] == end["action"] == "chat.completions"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        exposition = (await client.get("/metrics")).text
    assert 'ragward_gateway_time_to_first_token_seconds_count{streamed="true"}' in exposition
    assert 'ragward_gateway_stream_duration_seconds_count{outcome="completed"}' in exposition
    assert "ragward_gateway_streamed_tokens_total" in exposition


async def test_another_tenants_index_is_no_model_of_mine(
    url: str, serve_settings: Settings, tmp_path: Any
) -> None:
    """Models are the indexes the caller may use: a tenant-owned index is listed for its
    owner only, and for anyone else it is a NotFoundError exactly like a missing model —
    on models.retrieve and on chat.completions, streamed or not."""
    doc = tmp_path / "payroll.md"
    doc.write_text("# Payroll\n\nSalaries are paid on the 25th of each month.\n")
    owner, other = f"owner-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    index = f"payroll-{uuid.uuid4().hex[:6]}"
    ingest(ingest_config(serve_settings), [doc], index, owner=owner, show_progress=False)

    answer = await sdk(url, tenant=owner).chat.completions.create(  # loads the new index
        model=index, messages=[{"role": "user", "content": "When are salaries paid?"}])
    assert "25th" in (answer.choices[0].message.content or "")
    mine = [m.id async for m in sdk(url, tenant=owner).models.list()]
    theirs = [m.id async for m in sdk(url, tenant=other).models.list()]
    assert index in mine and "default" in mine
    assert index not in theirs and "default" in theirs

    client = sdk(url, tenant=other)
    messages: Any = [{"role": "user", "content": "When are salaries paid?"}]
    for model in (index, "no-such-index"):
        with pytest.raises(openai.NotFoundError) as foreign:
            await client.models.retrieve(model)
        assert "25th" not in str(foreign.value)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=model, messages=messages)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=model, messages=messages, stream=True)
