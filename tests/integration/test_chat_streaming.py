"""Streamed chat completions end to end: gateway → rag_core (HTTP, NDJSON) → the openai
backend → a local OpenAI-compatible server that streams word by word, on real Redis.

Pins the guarantees a stream must keep: a client that leaves cancels the upstream
and is still settled and recorded; concurrent streams cannot overspend a budget; a
completed stream is cached per tenant and served streamed, an abandoned one is not;
keep-alive comments fill long pauses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.tokens import count_tokens
from rag_core.app import create_app as create_rag_app
from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.errors import DependencyUnavailable
from ragward.settings import Settings, load_settings
from telemetry.configuration import kafka_config
from telemetry.consumer import Delivery, EventConsumer
from telemetry.events import AuditEvent, encode
from telemetry.kafka_bus import KafkaBus
from tests.gateway_harness import RunningGateway, bearer, gateway_settings, running_gateway, serving
from tests.integration.test_events_faults import Broker, private_kafka  # noqa: F401
from tests.openai_server import OpenAIStub

QUESTION = "How do I submit an expense claim?"
WORDS = 60
ANSWER = " ".join(f"word{i}" for i in range(WORDS))


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    with OpenAIStub(dim=64) as server:
        yield server


def rag_settings(data_dir: Path, stub: OpenAIStub) -> Settings:
    return load_settings(data_dir=data_dir, llm="openai", openai_base_url=stub.base_url,
                         openai_api_key="sk-test-not-a-real-key", llm_timeout_s=10.0)


@pytest.fixture(scope="module")
def data_dir(stub: OpenAIStub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("chat-stream")
    ingest(ingest_config(rag_settings(data, stub)), [], None, sample=True, show_progress=False)
    return data


@pytest.fixture(scope="module")
async def rag_core_url(data_dir: Path, stub: OpenAIStub) -> AsyncIterator[str]:
    """`ragward rag-core`'s app with the openai backend, over real HTTP."""
    async with serving(create_rag_app(rag_settings(data_dir, stub))) as url:
        yield url


@pytest.fixture
def fresh(stub: OpenAIStub) -> Iterator[OpenAIStub]:
    stub.clear()
    stub.stream_delay_s, stub.answer_text = 0.0, ANSWER
    yield stub
    stub.clear()
    stub.stream_delay_s, stub.answer_text, stub.chunk_chars = 0.0, None, 0


@dataclass
class Streamed:
    status: int
    lines: list[str]
    headers: dict[str, str]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(line[6:]) for line in self.lines
                if line.startswith("data: {")]

    @property
    def text(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or ""
                       for c in self.chunks if c.get("choices"))

    @property
    def done(self) -> bool:
        return bool(self.lines) and self.lines[-1] == "data: [DONE]"


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "default", "stream": True,
            "messages": [{"role": "user", "content": QUESTION}], **extra}


async def stream_chat(gw: RunningGateway, tenant: str, **extra: Any) -> Streamed:
    async with gw.client.stream("POST", "/v1/chat/completions", json=chat_body(**extra),
                                headers=bearer(tenant=tenant)) as response:
        lines = [line async for line in response.aiter_lines() if line]
        return Streamed(response.status_code, lines, dict(response.headers))


def closing_events(gw: RunningGateway, request_id: str) -> list[AuditEvent]:
    return [e for e in gw.audit_events()
            if e.request_id == request_id and e.chat is not None and e.chat.phase == "end"]


async def wait_for(predicate: Any, what: str, seconds: float = 15) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_streamed_answer_is_the_upstream_text_with_usage_from_the_upstream(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub
) -> None:
    """The chunks add up to the upstream's words; rag_core asked the upstream for
    include_usage and max_tokens, and the usage chunk carries the upstream's own counts."""
    settings = gateway_settings(tmp_path, rag_core_url, redis_url=redis_url)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with running_gateway(settings) as gw:
        result = await stream_chat(gw, tenant, stream_options={"include_usage": True},
                                   max_tokens=500)
    assert result.status == 200 and result.done
    assert result.text == ANSWER
    sent = fresh.seen("chat")[0]
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["max_tokens"] == 500
    usage = result.chunks[-1]["usage"]
    assert result.chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == sent.usage["completion_tokens"]
    assert usage["prompt_tokens"] == sent.usage["prompt_tokens"]


async def test_chat_answers_streamed_or_not_carry_the_rate_limit_headers(
    tmp_path: Path, rag_core_url: str, fresh: OpenAIStub
) -> None:
    """The status line of a streamed answer and a non-streamed completion both carry
    X-RateLimit-* from the quota's admission, the remaining count falling."""
    settings = gateway_settings(tmp_path, rag_core_url, quota_rpm=10)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with running_gateway(settings) as gw:
        streamed = await stream_chat(gw, tenant)
        whole = await gw.client.post("/v1/chat/completions", json=chat_body(stream=False),
                                     headers=bearer(tenant=tenant))
    assert streamed.status == 200 and streamed.done and whole.status_code == 200
    assert streamed.headers["x-ratelimit-remaining"] == "9"
    assert whole.headers["x-ratelimit-remaining"] == "8"
    assert streamed.headers["x-ratelimit-limit"] == whole.headers["x-ratelimit-limit"] == "10"


async def test_every_key_the_gateway_writes_in_redis_expires(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub
) -> None:
    """The class-level guard against Redis growing without bound: after every kind of
    request that touches Redis — a miss and a hit, a batch, two streamed chats (the second
    from the cache), the usage view and quota rejections — every key that appeared has a
    TTL; a key without one would stay until Redis runs out of memory."""
    import redis.asyncio as aioredis

    settings = gateway_settings(tmp_path, rag_core_url, redis_url=redis_url, quota_rpm=8)
    tenant = f"ttl-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_url)
    try:
        before = {key async for key in client.scan_iter(count=1000)}
        async with running_gateway(settings) as gw:
            auth = bearer(tenant=tenant, roles=["batch"])
            for _ in range(2):
                r = await gw.client.post("/v1/query", json={"question": QUESTION}, headers=auth)
                assert r.status_code == 200
            r = await gw.client.post("/v1/query/batch", headers=auth,
                                     json={"questions": [QUESTION, "And the deadline?"]})
            assert r.status_code == 200
            for _ in range(2):
                assert (await stream_chat(gw, tenant)).done
            assert (await gw.client.get("/v1/usage", headers=auth)).status_code == 200
            statuses = [(await gw.client.post("/v1/query", json={"question": f"q{i}"},
                                              headers=auth)).status_code for i in range(8)]
            assert 429 in statuses
        written = {key async for key in client.scan_iter(count=1000)} - before
        ttls = {key.decode(): await client.ttl(key) for key in written}
    finally:
        await client.aclose()
    scope = f"{{{tenant}}}"
    for family in (f"ragward:cache:{scope}:", f"ragward:quota:{scope}:rpm",
                   f"ragward:quota:{scope}:tokens:"):  # each writer was exercised
        assert any(key.startswith(family) for key in ttls), (family, ttls)
    assert all(scope in key for key in ttls), ttls  # all under the tenant's tag
    assert [key for key, ttl in ttls.items() if ttl < 0] == []


async def test_client_disconnect_cancels_upstream_records_once_and_settles_partial_usage(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub
) -> None:
    """A client that leaves mid-stream: the LLM call is cut (the upstream server sees its
    client go after a few words), exactly one closing audit event says ``disconnected``
    with the partial usage, and the tenant's budget holds that usage, no reservation."""
    fresh.stream_delay_s = 0.05
    settings = gateway_settings(tmp_path, rag_core_url, redis_url=redis_url)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    request_id = uuid.uuid4().hex
    async with running_gateway(settings) as gw:
        async with gw.client.stream(
            "POST", "/v1/chat/completions", json=chat_body(),
            headers={**bearer(tenant=tenant), "X-Request-ID": request_id},
        ) as response:
            assert response.status_code == 200
            lines = response.aiter_lines()
            first = await anext(lines)
            assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
            await wait_for(lambda: fresh.seen("chat") and fresh.seen("chat")[0].words_sent >= 8,
                           "upstream streaming")
        # leaving the block closed the connection mid-stream
        await wait_for(lambda: fresh.seen("chat")[0].status == 499, "upstream cancelled")
        assert fresh.seen("chat")[0].words_sent < WORDS
        await wait_for(lambda: closing_events(gw, request_id), "closing audit event")
        await asyncio.sleep(0.3)  # nothing else arrives for it
        ends = closing_events(gw, request_id)
        usage_now = (await gw.client.get("/v1/usage", headers=bearer(tenant=tenant))).json()
        exposition = (await gw.client.get("/metrics")).text
    assert "ragward_gateway_stream_disconnects_total 1.0" in exposition
    assert 'ragward_gateway_stream_duration_seconds_count{outcome="disconnected"} 1.0' in (
        exposition)
    assert len(ends) == 1
    end = ends[0]
    assert end.chat is not None and end.chat.outcome == "disconnected"
    assert end.reason == "client_disconnected"
    assert 0 < end.chat.completion_tokens < count_tokens(ANSWER)
    assert end.chat.total_tokens == end.chat.prompt_tokens + end.chat.completion_tokens
    tokens = usage_now["tokens_per_day"]
    assert tokens["reserved"] == 0 and tokens["used"] == end.chat.total_tokens
    usage_events = [u for u in gw.usage_events() if u.request_id == request_id]
    assert [u.total_tokens for u in usage_events] == [end.chat.total_tokens]


async def test_fifty_concurrent_streams_cannot_overspend_a_budget_for_ten(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub
) -> None:
    """50 streams at once against a day budget that holds 10 reservations (prompt
    estimate + context allowance + max_tokens): exactly 10 stream to [DONE], 40 get 429
    (OpenAI's shape, Retry-After) before any chunk, and the settled total is within the
    budget."""
    fresh.stream_delay_s = 0.02
    fresh.answer_text = " ".join(f"w{i}" for i in range(20))
    max_tokens = 40
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    allowance = 512
    estimate = count_tokens(QUESTION) + allowance + max_tokens
    budget = 10 * estimate + estimate - 1
    settings = gateway_settings(
        tmp_path, rag_core_url, redis_url=redis_url, quota_answer_allowance_tokens=allowance,
        quotas={"tenants": {tenant: {"tokens_per_day": budget}}}, cache_enabled=False,
    )
    async with running_gateway(settings) as gw:
        gw.client.timeout = httpx.Timeout(60)
        results = await asyncio.gather(*(stream_chat(gw, tenant, max_tokens=max_tokens)
                                         for _ in range(50)))
        usage_now = (await gw.client.get("/v1/usage", headers=bearer(tenant=tenant))).json()
    ok = [r for r in results if r.status == 200]
    limited = [r for r in results if r.status == 429]
    assert len(ok) == 10 and len(limited) == 40
    assert all(r.done and r.text == fresh.answer_text for r in ok)
    for r in limited:
        assert int(r.headers["retry-after"]) >= 1
        assert json.loads(r.lines[0])["error"]["type"] == "rate_limit_error"
    tokens = usage_now["tokens_per_day"]
    assert tokens["reserved"] == 0
    assert 0 < tokens["used"] <= budget
    ends = [e for e in gw.audit_events() if e.chat is not None and e.chat.phase == "end"]
    assert len(ends) == 10 and sum(e.chat.total_tokens for e in ends if e.chat) == tokens["used"]
    assert all(e.chat and e.chat.total_tokens <= estimate for e in ends)


async def test_completed_stream_is_cached_per_tenant_and_an_abandoned_one_is_not(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub
) -> None:
    """The second identical streamed question of a tenant is a hit served streamed (same
    text, no upstream call, cached in its audit event, no tokens); another tenant's is a
    miss; a stream the client left is not cached."""
    settings = gateway_settings(tmp_path, rag_core_url, redis_url=redis_url)
    a, b, c = (f"t-{uuid.uuid4().hex[:8]}" for _ in range(3))
    async with running_gateway(settings) as gw:
        first = await stream_chat(gw, a, stream_options={"include_usage": True})
        await asyncio.sleep(0.2)  # the cache is filled after the answer
        second = await stream_chat(gw, a, stream_options={"include_usage": True})
        assert len(fresh.seen("chat")) == 1
        other = await stream_chat(gw, b)
        assert len(fresh.seen("chat")) == 2

        fresh.stream_delay_s = 0.05
        async with gw.client.stream("POST", "/v1/chat/completions", json=chat_body(),
                                    headers=bearer(tenant=c)) as response:
            lines = response.aiter_lines()  # kept: a dropped iterator closes the response
            await anext(lines)
            await wait_for(lambda: fresh.seen("chat")[-1].words_sent >= 3, "streaming")
        await wait_for(lambda: fresh.seen("chat")[-1].status == 499, "cancelled")
        await asyncio.sleep(0.2)
        fresh.stream_delay_s = 0.0
        again = await stream_chat(gw, c)
        assert len(fresh.seen("chat")) == 4  # the abandoned answer was not served
    assert first.done and second.done and other.done and again.done
    assert second.text == first.text == other.text == ANSWER
    assert len(second.chunks) > 3  # a hit still streams, in pieces
    assert second.chunks[-1]["usage"]["total_tokens"] == 0
    ends = {e.request_id: e for e in gw.audit_events() if e.chat and e.chat.phase == "end"}
    cached = [e.cached for e in ends.values()]
    assert cached.count(True) == 1


async def test_keepalive_comments_fill_long_pauses(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub
) -> None:
    """While nothing can be sent, ``: keep-alive`` comments go out every
    RAGWARD_CHAT_KEEPALIVE_S, so proxies do not cut the stream."""
    fresh.stream_delay_s, fresh.answer_text = 0.3, "one two three"
    settings = gateway_settings(tmp_path, rag_core_url, redis_url=redis_url,
                                chat_keepalive_s=0.1)
    async with running_gateway(settings) as gw:
        result = await stream_chat(gw, f"t-{uuid.uuid4().hex[:8]}")
    assert result.done and result.text == "one two three"
    assert result.lines.count(": keep-alive") >= 3


async def test_kafka_frozen_mid_stream_no_done_without_a_durable_closing_record(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub,
    private_kafka: Broker,  # noqa: F811  (the fixture imported above)
) -> None:
    """Kafka frozen (SIGSTOP) while streams run. A stream that ends while the spool has
    room ends with ``data: [DONE]``, and its closing audit event is in Kafka once the
    broker thaws (it was durable in the spool meanwhile). Once the spool is full, a new
    stream is a 503 (OpenAI's error shape) before any event, and a stream that ends
    then ends with an error event and no ``[DONE]``."""
    fresh.stream_delay_s = 0.1
    fresh.answer_text = " ".join(f"w{i}" for i in range(60))  # ~6 s unless cut short
    unique = uuid.uuid4().hex[:10]
    settings = gateway_settings(
        tmp_path, rag_core_url, redis_url=redis_url,
        kafka_bootstrap=private_kafka.service.address, kafka_ack_timeout_s=0.5,
        spool_max_bytes=4096, topic_audit=f"frozen.audit.{unique}",
        topic_usage=f"frozen.usage.{unique}", cache_enabled=False,
    )
    tenant = f"k-{unique}"
    pid = private_kafka.service.pid

    async def one(gw: RunningGateway, request_id: str, started: asyncio.Event,
                  **extra: Any) -> list[str]:
        async with gw.client.stream(
            "POST", "/v1/chat/completions", json=chat_body(**extra),
            headers={**bearer(tenant=tenant), "X-Request-ID": request_id},
        ) as response:
            assert response.status_code == 200
            started.set()
            return [line async for line in response.aiter_lines() if line]

    async with running_gateway(settings, bus=KafkaBus(kafka_config(settings))) as gw:
        gw.client.timeout = httpx.Timeout(60)
        publisher = gw.app.state.components.publisher
        late, early = uuid.uuid4().hex, uuid.uuid4().hex
        late_started = asyncio.Event()
        late_task = asyncio.create_task(one(gw, late, late_started))  # the long answer
        await asyncio.wait_for(late_started.wait(), 30)  # its opening record is in Kafka
        os.kill(pid, signal.SIGSTOP)
        try:
            early_lines = await one(gw, early, asyncio.Event(), max_tokens=3)  # short
            assert early_lines[-1] == "data: [DONE]"  # closing record in the spool
            filler = encode(AuditEvent(event_id=uuid.uuid4().hex, request_id="filler",
                                       ts="2026-01-01T00:00:00.000000Z", tenant=tenant))
            refused = 0
            for _ in range(64):  # fill the spool to the brim
                try:
                    await publisher.publish(settings.topic_audit, tenant, filler)
                except DependencyUnavailable:
                    refused += 1
                    break
            assert refused, "the spool filled up"
            # A new stream cannot make its opening record durable: no status line of a
            # stream, but a 503 in OpenAI's shape before any event.
            opening = await gw.client.post("/v1/chat/completions", json=chat_body(),
                                           headers=bearer(tenant=tenant))
            assert opening.status_code == 503 and opening.headers["retry-after"]
            assert opening.headers["content-type"].startswith("application/json")
            assert opening.json()["error"]["type"] == "api_error"
            assert opening.json()["error"]["code"] == "dependency_unavailable"
            assert opening.json()["request_id"] == opening.headers["x-request-id"]
            assert not late_task.done(), "the long answer is still streaming"
            late_lines = await late_task
        finally:
            os.kill(pid, signal.SIGCONT)
    last = json.loads(late_lines[-1][6:])
    assert last["error"]["code"] == "dependency_unavailable"
    assert "data: [DONE]" not in late_lines
    assert early in await closing_request_ids(settings, f"check-{unique}", expect={early})


async def closing_request_ids(settings: Settings, group: str, expect: set[str]) -> set[str]:
    found: set[str] = set()

    async def handler(batch: list[Delivery]) -> None:
        for delivery in batch:
            event = delivery.event
            if isinstance(event, AuditEvent) and event.chat and event.chat.phase == "end":
                found.add(event.request_id)

    bus = KafkaBus(kafka_config(settings, spool_dir=settings.data_dir / f"spool-{group}"))
    consumer = EventConsumer(bus,
                             [settings.topic_audit], group, handler,
                             dead_letter_topic=settings.topic_dead_letter)
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while not expect <= found:
                await asyncio.sleep(0.1)
    finally:
        await consumer.stop()
    return found


# Every entity type the redactor knows, English and Chinese, one repeated (same placeholder).
PII_ANSWER = ("Write to jane.doe@example.com or call +1 415 555 2671; the card on file is "
              "4111 1111 1111 1111 and the server is 10.1.2.3, or 2001:db8::8a2e:370:7334. "
              "IBAN DE89 3704 0044 0532 0130 00, SSN 219-09-9999, 身份证 11010519491231002X, "
              "手机 13812345678, key sk-live-4eC39HqLyjWDarjtT1zdp7dc. "
              "Ask jane.doe@example.com again.")
# Pieces of each entity that must never reach a client, whole or as a prefix it could show.
RAW = ("jane.doe", "example.com", "555 2671", "4111", "10.1.2.3", "2001:db8", "8a2e",
       "DE89", "3704 0044", "219-09", "9999", "110105", "1949", "1381234", "sk-live",
       "4eC39")


@pytest.mark.parametrize("chunk_chars", [0, 1, 2, 3, 5, 7, 11])
async def test_pii_in_a_streamed_answer_never_leaves_and_matches_the_whole_redaction(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub, chunk_chars: int
) -> None:
    """Whatever the upstream's chunking (a word, 1, 3 or 7 characters per chunk: entities
    split across chunks everywhere), no prefix the client receives holds any part of an
    entity, the whole streamed text equals the non-streamed answer's redaction (same
    placeholders and numbering), and the closing audit event counts those redactions."""
    fresh.answer_text, fresh.chunk_chars = PII_ANSWER, chunk_chars
    settings = gateway_settings(tmp_path, rag_core_url, redis_url=redis_url,
                                cache_enabled=False)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with running_gateway(settings) as gw:
        streamed = await stream_chat(gw, tenant)
        whole = await gw.client.post(
            "/v1/chat/completions", headers=bearer(tenant=tenant),
            json={**chat_body(), "stream": False})
    assert streamed.done
    expected = whole.json()["choices"][0]["message"]["content"]
    received = ""
    for chunk in streamed.chunks:
        if chunk.get("choices"):
            received += chunk["choices"][0]["delta"].get("content") or ""
            # every prefix the client holds is a prefix of the whole redaction: nothing
            # raw, not even a part of an entity, ever went out
            assert expected.startswith(received), (received, expected)
            assert not any(raw in received for raw in RAW), received
    assert received == expected
    assert "<EMAIL_1>" in received and received.count("<EMAIL_1>") == 2
    for placeholder in ("<PHONE_2>", "<CREDIT_CARD_1>", "<IPV4_1>", "<IPV6_1>", "<IBAN_1>",
                        "<US_SSN_1>", "<CN_ID_1>", "<SECRET_1>"):
        assert placeholder in received, (placeholder, received)
    # the closing audit event counts what the answer's redaction replaced too
    ends = [e for e in gw.audit_events() if e.chat is not None and e.chat.phase == "end"]
    assert ends and all(e.redactions.get("EMAIL", 0) >= 2 for e in ends)
    assert all(e.redactions.get("CREDIT_CARD", 0) >= 1 for e in ends)


async def test_a_long_history_reserves_only_what_memory_can_keep(
    tmp_path: Path, rag_core_url: str, redis_url: str, fresh: OpenAIStub
) -> None:
    """The reservation counts the history only up to RAGWARD_CHAT_MEMORY_TOKENS (what
    memory can send on): a tenant whose budget holds that is answered, whatever the length
    of the history the client sends."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    memory, allowance, max_tokens = 100, 64, 50
    history: list[dict[str, str]] = []
    for i in range(100):
        history += [{"role": "user", "content": f"old question {i} " * 10},
                    {"role": "assistant", "content": f"old answer {i} " * 10}]
    assert sum(count_tokens(m["content"]) for m in history) > 5000
    budget = count_tokens(QUESTION) + memory + allowance + max_tokens
    settings = gateway_settings(
        tmp_path, rag_core_url, redis_url=redis_url, chat_memory_tokens=memory,
        quota_answer_allowance_tokens=allowance, cache_enabled=False,
        quotas={"tenants": {tenant: {"tokens_per_day": budget}}},
    )
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            "/v1/chat/completions", headers=bearer(tenant=tenant),
            json={"model": "default", "max_tokens": max_tokens,
                  "messages": [*history, {"role": "user", "content": QUESTION}]})
    assert response.status_code == 200, response.text


async def test_in_serve_a_disconnect_cancels_the_in_process_llm_call_too(
    data_dir: Path, stub: OpenAIStub, fresh: OpenAIStub, redis_url: str
) -> None:
    """`ragward serve` (rag_core in process, openai backend): a client that leaves
    mid-stream cuts the LLM call, and the audit log gets one closing record with the
    disconnect and the partial usage."""
    from ragward.serve import create_serve_app
    from tests.conftest import TEST_SECRET

    fresh.stream_delay_s = 0.05
    serve_settings = rag_settings(data_dir, stub).model_copy(update={
        "jwt_secret": load_settings(jwt_secret=TEST_SECRET).jwt_secret,
        "redis_url": redis_url,
    })
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    request_id = uuid.uuid4().hex
    async with serving(create_serve_app(serve_settings)) as url, httpx.AsyncClient(
        base_url=url, timeout=30
    ) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat_body(),
            headers={**bearer(tenant=tenant), "X-Request-ID": request_id},
        ) as response:
            lines = response.aiter_lines()
            await anext(lines)
            await wait_for(lambda: bool(fresh.seen("chat"))
                           and fresh.seen("chat")[-1].words_sent >= 5, "streaming")
        await wait_for(lambda: fresh.seen("chat")[-1].status == 499, "LLM call cancelled")
        assert fresh.seen("chat")[-1].words_sent < WORDS
        compliance = bearer(sub="auditor", tenant=tenant, roles=["compliance"])

        async def closing() -> list[dict[str, Any]]:
            page = (await client.get(f"/v1/audit?request_id={request_id}",
                                     headers=compliance)).json()
            return [r for r in page["records"] if r.get("chat", {}).get("phase") == "end"]

        async with asyncio.timeout(15):
            while not (ends := await closing()):
                await asyncio.sleep(0.1)
    assert len(ends) == 1
    chat = ends[0]["chat"]
    assert chat["outcome"] == "disconnected" and 0 < chat["completion_tokens"] < WORDS * 2
