"""The gateway's request path: bad input, cache, PII, forwarding failures, audit events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.upstream_server import UpstreamServer

EMAIL, CARD, CN_ID = "jane.doe@example.com", "4111 1111 1111 1111", "11010519491231002X"


async def test_bad_input_gets_the_contract_errors(tmp_path: Path, upstream: UpstreamServer) -> None:
    """Malformed JSON 400, wrong types 422 naming the field, too long 422, body 413, batch 422."""
    settings = gateway_settings(tmp_path, upstream.url, max_body_bytes=4096, max_question_chars=100)
    async with running_gateway(settings) as gw:
        post = gw.client.post
        malformed = await post("/v1/query", content=b"{not json", headers=bearer())
        wrong_type = await post("/v1/query", json={"question": 42}, headers=bearer())
        top_k = await post("/v1/query", json={"question": "hi", "top_k": 99}, headers=bearer())
        too_long = await post("/v1/query", json={"question": "x" * 101}, headers=bearer())
        too_big = await post("/v1/query", json={"question": "x" * 5000}, headers=bearer())
        batch = await post("/v1/query/batch", json={"questions": ["q"] * 33},
                           headers=bearer(roles=["batch"]))
        unknown = await post("/v1/nope", json={}, headers=bearer())
        events = gw.audit_events()
    assert malformed.status_code == 400, malformed.text
    assert malformed.json()["error"]["code"] == "bad_request"
    assert wrong_type.status_code == 422 and "question" in wrong_type.json()["error"]["message"]
    assert top_k.status_code == 422 and "top_k" in top_k.json()["error"]["message"]
    assert too_long.status_code == 422 and "question" in too_long.json()["error"]["message"]
    assert too_big.status_code == 413
    assert batch.status_code == 422 and "questions" in batch.json()["error"]["message"]
    assert unknown.status_code == 404
    for response in (malformed, wrong_type, too_long, too_big, batch, unknown):
        body = response.json()["error"]
        assert set(body) == {"code", "message", "request_id"}
        assert "Traceback" not in response.text
    assert upstream.received == []
    # every request that reached the gateway has exactly one audit event
    assert len(events) == 7 and len({e.event_id for e in events}) == 7
    assert {e.decision for e in events} == {"invalid"}


async def test_pii_never_reaches_rag_core_cache_key_or_events(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """The question is redacted before forwarding; answers and sources are redacted before
    the client sees them; events carry only redacted text and a hash."""
    upstream.behaviour.source_text = f"Contact {EMAIL} or card {CARD} for leave questions."
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        question = f"I am {EMAIL}, my ID is {CN_ID}; how much leave do I have?"
        response = await gw.client.post("/v1/query", json={"question": question},
                                        headers=bearer())
        events = gw.audit_events()
    assert response.status_code == 200
    forwarded = upstream.received[0]["question"]
    assert EMAIL not in forwarded and CN_ID not in forwarded
    assert "<EMAIL_1>" in forwarded and "<CN_ID_1>" in forwarded
    body = response.text
    assert EMAIL not in body and CARD not in body and CN_ID not in body
    source = response.json()["sources"][0]["text"]
    assert "<EMAIL_1>" in source and "<CREDIT_CARD_1>" in source
    event = events[0]
    assert EMAIL not in str(event) and CN_ID not in str(event)
    assert event.redactions.get("EMAIL", 0) >= 1 and event.redactions.get("CN_ID") == 1
    assert len(event.question_hmac[0]) == 64


async def test_a_gateway_on_the_reference_scanner_redacts_and_says_so(
    tmp_path: Path, upstream: UpstreamServer, capsys: pytest.CaptureFixture[str],
) -> None:
    """Without the native extension the Python scanner does the same work, and the
    gateway warns once at start-up that it runs the slower one."""
    from gateway.pii import python_scanner

    async with running_gateway(gateway_settings(tmp_path, upstream.url),
                               pii_scanner=python_scanner()) as gw:
        response = await gw.client.post(
            "/v1/query", json={"question": f"I am {EMAIL}"}, headers=bearer())
    assert response.status_code == 200
    assert upstream.received[0]["question"] == "I am <EMAIL_1>"
    assert capsys.readouterr().out.count("pii_scanner_not_native") == 1


async def test_authentication_comes_before_parsing_the_body(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """Without a valid token, even a malformed or invalid body is answered 401: callers
    who cannot authenticate learn nothing about validation rules."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        malformed = await gw.client.post("/v1/query", content=b"{nope")
        invalid = await gw.client.post("/v1/query", json={"question": 42, "top_k": 99})
    assert (malformed.status_code, invalid.status_code) == (401, 401)
    assert "question" not in invalid.text and "top_k" not in invalid.text


async def test_blocked_pii_type_gets_422_and_is_not_forwarded(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """A type configured to `block` refuses the request, naming the type."""
    settings = gateway_settings(tmp_path, upstream.url, pii_actions={"CREDIT_CARD": "block"})
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            "/v1/query", json={"question": f"charge {CARD} please"}, headers=bearer())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "pii_blocked"
    assert "CREDIT_CARD" in response.json()["error"]["message"]
    assert upstream.received == []


async def test_blocked_type_in_an_answer_is_redacted_not_refused(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """Blocking applies to what callers send; a blocked type inside a document is redacted."""
    upstream.behaviour.source_text = f"Corporate card {CARD} is for travel."
    settings = gateway_settings(tmp_path, upstream.url, pii_actions={"CREDIT_CARD": "block"})
    async with running_gateway(settings) as gw:
        response = await gw.client.post("/v1/query", json={"question": "which card?"},
                                        headers=bearer())
    assert response.status_code == 200
    assert CARD not in response.text and "<CREDIT_CARD_1>" in response.text


async def test_cache_is_tenant_isolated_in_redis(
    tmp_path: Path, upstream: UpstreamServer, redis_url: str
) -> None:
    """Tenant B never receives tenant A's cached answer for the same question; a new
    index version makes old entries unreachable; an admin can bypass with no-cache."""
    settings = gateway_settings(tmp_path, upstream.url, redis_url=redis_url)
    question = {"question": f"cache isolation {time.time_ns()}"}
    async with running_gateway(settings) as gw:
        a1 = await gw.client.post("/v1/query", json=question, headers=bearer(tenant="a"))
        a2 = await gw.client.post("/v1/query", json=question, headers=bearer(tenant="a"))
        b1 = await gw.client.post("/v1/query", json=question, headers=bearer(tenant="b"))
        assert (a1.json()["cached"], a2.json()["cached"], b1.json()["cached"]) == (
            False, True, False)
        assert len(upstream.received) == 2  # a once, b once
        upstream.behaviour.index_version = "v2"  # a re-ingest
        await gw.client.post("/v1/query", json={"question": "warm v2"}, headers=bearer())
        a3 = await gw.client.post("/v1/query", json=question, headers=bearer(tenant="a"))
        assert a3.json()["cached"] is False
        fresh = await gw.client.post("/v1/query", json=question,
                                     headers={**bearer(tenant="a", roles=["admin"]),
                                              "Cache-Control": "no-cache"})
        assert fresh.json()["cached"] is False
        usage = gw.usage_events()
    assert [u.cached for u in usage if u.tenant == "a"] == [False, True, False, False]


async def test_circuit_opens_fast_and_closes_after_recovery(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """rag_core down → 503 at once once the circuit is open; back up → answers resume."""
    settings = gateway_settings(tmp_path, upstream.url, circuit_failure_threshold=3,
                                circuit_reset_s=0.5, upstream_retries=0)
    async with running_gateway(settings) as gw:
        ok = await gw.client.post("/v1/query", json={"question": "before"}, headers=bearer())
        assert ok.status_code == 200
        port = upstream.port
        await upstream.stop()
        statuses = []
        for i in range(6):
            r = await gw.client.post("/v1/query", json={"question": f"down {i}"},
                                     headers=bearer())
            statuses.append(r.status_code)
        assert set(statuses) == {503}
        started = time.perf_counter()
        fast = await gw.client.post("/v1/query", json={"question": "fast"}, headers=bearer())
        assert fast.status_code == 503 and time.perf_counter() - started < 0.2
        metrics = (await gw.client.get("/metrics")).text
        assert "ragward_gateway_circuit_state 2.0" in metrics
        await upstream.start(port=port)
        await asyncio.sleep(0.6)
        recovered = await gw.client.post("/v1/query", json={"question": "after"},
                                         headers=bearer())
        assert recovered.status_code == 200
        assert "ragward_gateway_circuit_state 0.0" in (await gw.client.get("/metrics")).text


async def test_upstream_errors_map_to_502_and_504(tmp_path: Path, upstream: UpstreamServer) -> None:
    """A 500 from rag_core is a 502; a slow rag_core is a 504 within the timeout."""
    settings = gateway_settings(tmp_path, upstream.url, upstream_timeout_s=0.3,
                                circuit_failure_threshold=50)
    async with running_gateway(settings) as gw:
        upstream.behaviour.status = 500
        failed = await gw.client.post("/v1/query", json={"question": "x"}, headers=bearer())
        upstream.behaviour.status, upstream.behaviour.latency_s = 200, 2.0
        started = time.perf_counter()
        slow = await gw.client.post("/v1/query", json={"question": "y"}, headers=bearer())
        elapsed = time.perf_counter() - started
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_error"
    assert slow.status_code == 504 and elapsed < 1.5


async def test_concurrency_bound_sheds_load_with_503(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """More concurrent calls than slots + queue get 503 overloaded, not unbounded waiting."""
    upstream.behaviour.latency_s = 0.5
    settings = gateway_settings(tmp_path, upstream.url, max_concurrent_upstream=2,
                                upstream_queue=2, cache_enabled=False)
    async with running_gateway(settings) as gw:
        responses = await asyncio.gather(*(
            gw.client.post("/v1/query", json={"question": f"q{i}"}, headers=bearer())
            for i in range(8)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 4 and statuses.count(503) == 4
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 503} == {
        "overloaded"}


async def test_quota_through_the_gateway(
    tmp_path: Path, upstream: UpstreamServer, redis_url: str, unique: str
) -> None:
    """The 11th request in a 10/min window is a 429 with the rate-limit headers;
    /v1/usage shows the tenant's figures."""
    settings = gateway_settings(tmp_path, upstream.url, redis_url=redis_url, quota_rpm=10)
    tenant = f"t-{unique}"
    async with running_gateway(settings) as gw:
        statuses = []
        for i in range(11):
            r = await gw.client.post("/v1/query", json={"question": f"n{i}"},
                                     headers=bearer(tenant=tenant))
            statuses.append(r.status_code)
        usage = await gw.client.get("/v1/usage", headers=bearer(tenant=tenant))
        events = gw.audit_events()
    assert statuses == [200] * 10 + [429]
    assert r.headers["x-ratelimit-limit"] == "10" and r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["retry-after"]) >= 1 and int(r.headers["x-ratelimit-reset"]) > 0
    assert usage.status_code == 200 and usage.json()["tenant"] == tenant
    assert [e.decision for e in events][-2:] == ["rate_limited", "allow"]


async def test_every_request_kind_has_one_audit_event(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """allowed, denied, forbidden, malformed and failed requests each yield one audit event
    with the right decision; answered ones also one usage event."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        await gw.client.post("/v1/query", json={"question": "ok"}, headers=bearer())
        await gw.client.post("/v1/query", json={"question": "no token"})
        await gw.client.post("/v1/query", json={"question": "x"},
                             headers=bearer(roles=["compliance"]))
        await gw.client.post("/v1/query", content=b"[", headers=bearer())
        upstream.behaviour.status = 500
        await gw.client.post("/v1/query", json={"question": "fails"}, headers=bearer())
        await gw.client.get("/health")
        audit, usage = gw.audit_events(), gw.usage_events()
    assert [e.decision for e in audit] == ["allow", "deny", "deny", "invalid", "error"]
    assert [e.status for e in audit] == [200, 401, 403, 400, 502]
    assert len(usage) == 1 and usage[0].total_tokens == 55
    assert all(e.route == "/v1/query" and e.request_id for e in audit)


async def test_every_admitted_answer_carries_the_rate_limit_headers(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """A query, a batch and a request that rag_core failed after the quota admitted it
    all carry X-RateLimit-* with the remaining count falling; a request refused before
    the quota (no token) carries none."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url, quota_rpm=10)) as gw:
        single = await gw.client.post("/v1/query", json={"question": "a"}, headers=bearer())
        batch = await gw.client.post("/v1/query/batch", json={"questions": ["b", "c"]},
                                     headers=bearer(roles=["batch"]))
        upstream.behaviour.status = 500
        failed = await gw.client.post("/v1/query", json={"question": "d"}, headers=bearer())
        anonymous = await gw.client.post("/v1/query", json={"question": "e"})
    assert [r.status_code for r in (single, batch, failed, anonymous)] == [200, 200, 502, 401]
    assert [r.headers.get("x-ratelimit-remaining") for r in (single, batch, failed)] == [
        "9", "8", "7"]
    assert {r.headers["x-ratelimit-limit"] for r in (single, batch, failed)} == {"10"}
    assert int(single.headers["x-ratelimit-reset"]) > time.time()
    assert "x-ratelimit-limit" not in anonymous.headers


async def test_a_refused_request_is_audited_with_its_routes_action_and_the_index_it_named(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """The audit event of a request refused before any handler code (no token, malformed
    JSON) still names its route's action, and one refused for its index (a role allowed
    other indexes only) or for a question over the limit names the index it asked for."""
    settings = gateway_settings(tmp_path, upstream.url, max_question_chars=10,
                                index_allow={"roles": {"reader": ["public"]}})
    async with running_gateway(settings) as gw:
        post = gw.client.post
        await post("/v1/query/batch", json={"questions": ["q"]})
        await post("/v1/query", content=b"{", headers=bearer())
        await post("/v1/query", json={"question": "q", "index": "secret"}, headers=bearer())
        await post("/v1/query", json={"question": "x" * 11, "index": "public"},
                   headers=bearer())
        events = gw.audit_events()
    assert [(e.status, e.action, e.index) for e in events] == [
        (401, "query.batch", None), (400, "query", None), (403, "query", "secret"),
        (422, "query", "public"),
    ]
    assert upstream.received == []


async def test_a_rate_limited_question_is_audited_redacted_and_hashed(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """A refusal keeps what was decided before it: the 429's audit event holds the
    redacted question, its keyed hash and the redaction counts, like an answered one."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url, quota_rpm=1)) as gw:
        for _ in range(2):
            last = await gw.client.post("/v1/query", json={"question": f"I am {EMAIL}"},
                                        headers=bearer())
        answered, refused = gw.audit_events()
    assert last.status_code == 429 and refused.decision == "rate_limited"
    assert refused.questions_redacted == ["I am <EMAIL_1>"] == answered.questions_redacted
    assert refused.question_hmac == answered.question_hmac and len(refused.question_hmac) == 1
    assert refused.redactions == {"EMAIL": 1} and refused.index == "default"


async def test_pii_never_reaches_the_redis_cache_or_the_logs(
    tmp_path: Path, upstream: UpstreamServer, redis_url: str, unique: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Neither the cache keys and values in Redis nor any log line hold the raw PII."""
    import redis.asyncio as aioredis

    upstream.behaviour.source_text = f"Write to {EMAIL}."
    settings = gateway_settings(tmp_path, upstream.url, redis_url=redis_url)
    question = f"{unique}: I am {EMAIL} with card {CARD}; what is my leave?"
    async with running_gateway(settings) as gw:
        for _ in range(2):
            r = await gw.client.post("/v1/query", json={"question": question},
                                     headers=bearer(tenant=f"pii-{unique}"))
            assert r.status_code == 200
        assert r.json()["cached"] is True
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter("ragward:*")]  # cache and quota keys
        stored = [(key, await client.get(key)) for key in keys
                  if key.startswith(b"ragward:cache:")]
    finally:
        await client.aclose()
    assert stored, "the answer was cached"
    assert not any(EMAIL.encode() in key for key in keys)
    for key, value in stored:
        for secret in (EMAIL.encode(), CARD.encode()):
            assert secret not in key and secret not in (value or b"")
    logs = capsys.readouterr()
    assert EMAIL not in logs.out + logs.err and "4111 1111" not in logs.out + logs.err


async def test_gateway_metrics_pass_promtool(tmp_path: Path, upstream: UpstreamServer) -> None:
    """Debian's `promtool check metrics` accepts the gateway's /metrics exposition."""
    import shutil
    import subprocess

    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        await gw.client.post("/v1/query", json={"question": "q"}, headers=bearer())
        await gw.client.post("/v1/query", json={"question": "q"})
        response = await gw.client.get("/metrics")
        exposition = response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST  # the charset once
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by deploy/install-system-deps.sh"
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, text=True,
                            capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'ragward_gateway_requests_total{method="POST",route="/v1/query",status="401"}' \
        in exposition
