"""The gateway on a real Redis Cluster (three primaries on loopback, joined with
``redis-cli --cluster create``), reached through ``RAGWARD_REDIS_URL=redis+cluster://…``.

Quota and reservation semantics on the cluster are the whole of
``test_quota_redis.py`` (every test there runs on one server and on the cluster).
Here: the key layout that makes that possible, and the request path end to end —
cache, batches, streamed reservations — with the same assertions as on one server.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from gateway.cache import KEY_PREFIX, cache_key
from gateway.quota import DEFAULT_KEY_PREFIX
from gateway.redis_client import RedisConfig, redis_connection
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.integration import test_chat_streaming as streaming
from tests.integration import test_gateway_requests as requests
from tests.integration.test_chat_streaming import (  # noqa: F401  (module fixtures reused)
    data_dir,
    fresh,
    rag_core_url,
    stub,
)
from tests.openai_server import OpenAIStub
from tests.upstream_server import UpstreamServer

pytestmark = pytest.mark.redis

TENANTS = ["acme", "a}b", "{x", "租户", "t 1", "z" * 128]


@pytest.fixture
def patient_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAGWARD_REDIS_TIMEOUT_S=2 for the borrowed streaming tests: 50 streams opened at
    once on this shared 2-core machine can take a quota call past the default 0.25 s,
    which (rightly) degrades to the local fallback — a test of the machine, not of the
    cluster. Fail-open and fail-closed are pinned by test_quota_failover.py."""
    monkeypatch.setenv("RAGWARD_REDIS_TIMEOUT_S", "2")


def tenant_keys(tenant: str) -> list[bytes]:
    """Every key the gateway writes for one request of ``tenant`` (quota and cache)."""
    scope = DEFAULT_KEY_PREFIX + "{" + tenant + "}"
    entries = [KEY_PREFIX + cache_key(tenant, "default", "v1", 3, q) for q in ("a?", "b?")]
    return [k.encode() for k in (f"{scope}:rpm", f"{scope}:tokens:2026-01-01", *entries)]


def test_every_key_of_a_tenant_hashes_to_one_slot() -> None:
    """A tenant's window, budget and cache entries share one hash slot — for tenant
    names with braces and non-ASCII text too — while tenants spread over the slots;
    the old cache layout (a bare digest) put a request's entries in different slots."""
    slots = {tenant: {key_slot(k) for k in tenant_keys(tenant)} for tenant in TENANTS}
    assert all(len(s) == 1 for s in slots.values()), slots
    assert len({next(iter(s)) for s in slots.values()}) > 1
    old = {key_slot((KEY_PREFIX + cache_key("acme", "default", "v1", 3, q)
                     .split(":", 1)[1]).encode()) for q in ("a?", "b?")}
    assert len(old) == 2


async def test_a_multi_key_read_of_the_old_layout_is_refused_by_the_cluster(
    redis_cluster_url: str, unique: str
) -> None:
    """What the cluster does to a request whose keys span slots (the old untagged cache
    entries read beside the quota keys): CROSSSLOT. The new layout reads fine."""
    async with redis_connection(RedisConfig(url=redis_cluster_url)) as client:
        assert isinstance(client, RedisCluster)
        await client.initialize()
        node = client.get_node_from_key(f"{unique}:a")
        spread = [f"{unique}:{i}" for i in range(20)]
        with pytest.raises(ResponseError, match="hash to the same slot"):  # CROSSSLOT
            await client.execute_command("MGET", *spread, target_nodes=node)
        tagged = [k.decode() for k in tenant_keys(unique)]
        assert await client.mget(tagged) == [None] * len(tagged)


async def test_batch_answers_are_cached_on_the_cluster_and_the_quota_stays_healthy(
    tmp_path: Path, upstream: UpstreamServer, redis_cluster_url: str
) -> None:
    """A batch of three questions is answered once and then served from the cache,
    all three in one read (their keys share the tenant's slot); the usage view counts
    both requests; /ready reports the quota controls healthy, not degraded."""
    settings = gateway_settings(tmp_path, upstream.url, redis_url=redis_cluster_url)
    tenant = f"c-{uuid.uuid4().hex[:8]}"
    body = {"questions": [f"{tenant} question {i}?" for i in range(3)]}
    headers = bearer(tenant=tenant, roles=["batch"])
    async with running_gateway(settings) as gw:
        first = await gw.client.post("/v1/query/batch", json=body, headers=headers)
        second = await gw.client.post("/v1/query/batch", json=body, headers=headers)
        usage = (await gw.client.get("/v1/usage", headers=headers)).json()
        ready = await gw.client.get("/ready")
    assert first.status_code == second.status_code == 200
    assert [r["cached"] for r in first.json()["results"]] == [False] * 3
    assert [r["cached"] for r in second.json()["results"]] == [True] * 3
    assert len(upstream.received) == 1
    assert usage["degraded"] is False and usage["requests_per_minute"]["used"] == 2
    assert usage["tokens_per_day"]["reserved"] == 0
    checks = ready.json()["checks"]
    assert checks["quota_rpm"] == checks["quota_tokens"] == "ok"


async def test_the_cache_keeps_tenants_apart_on_the_cluster(
    tmp_path: Path, upstream: UpstreamServer, redis_cluster_url: str
) -> None:
    """The one-server cache isolation test, unchanged, on the cluster."""
    await requests.test_cache_is_tenant_isolated_in_redis(tmp_path, upstream, redis_cluster_url)


@pytest.mark.usefixtures("patient_redis")
async def test_a_left_stream_settles_its_partial_usage_on_the_cluster(
    tmp_path: Path, rag_core_url: str, redis_cluster_url: str,  # noqa: F811
    fresh: OpenAIStub,  # noqa: F811
) -> None:
    """A stream the client leaves is settled at its partial usage, no reservation
    left behind (the one-server test, unchanged, on the cluster)."""
    await streaming.test_client_disconnect_cancels_upstream_records_once_and_settles_partial_usage(
        tmp_path, rag_core_url, redis_cluster_url, fresh)


@pytest.mark.usefixtures("patient_redis")
async def test_concurrent_streams_cannot_overspend_a_budget_on_the_cluster(
    tmp_path: Path, rag_core_url: str, redis_cluster_url: str,  # noqa: F811
    fresh: OpenAIStub,  # noqa: F811
) -> None:
    """Streaming reservations on the cluster: the one-server test of 50 concurrent
    streams against a budget for 10, unchanged."""
    await streaming.test_fifty_concurrent_streams_cannot_overspend_a_budget_for_ten(
        tmp_path, rag_core_url, redis_cluster_url, fresh)


@pytest.mark.usefixtures("patient_redis")
async def test_a_completed_stream_is_cached_per_tenant_on_the_cluster(
    tmp_path: Path, rag_core_url: str, redis_cluster_url: str,  # noqa: F811
    fresh: OpenAIStub,  # noqa: F811
) -> None:
    """The streamed-answer cache on the cluster (the one-server test, unchanged)."""
    await streaming.test_completed_stream_is_cached_per_tenant_and_an_abandoned_one_is_not(
        tmp_path, rag_core_url, redis_cluster_url, fresh)
