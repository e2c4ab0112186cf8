"""The gateway when Redis goes away and comes back: each quota mode as configured,
`/ready` says so, and normal service resumes without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragward import devservices
from ragward.devservices import RunningService
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.upstream_server import UpstreamServer


@pytest.fixture
def private_redis() -> Iterator[list[RunningService]]:
    """A Redis of this test's own (the list holds the current process across restarts)."""
    holder = [devservices.start_redis()]
    yield holder
    devservices.stop(holder[-1])


async def _ask(gw: object, tenant: str) -> int:
    r = await gw.client.post("/v1/query", json={"question": "q"},  # type: ignore[attr-defined]
                             headers=bearer(tenant=tenant))
    return r.status_code


@pytest.mark.parametrize(("mode", "during_outage", "ready_status"),
                         [("fail_open", 200, 200), ("fail_closed", 503, 503)])
async def test_redis_outage_follows_the_configured_mode(
    tmp_path: Path, upstream: UpstreamServer, private_redis: list[RunningService],
    mode: str, during_outage: int, ready_status: int,
) -> None:
    """Redis stopped: fail_open keeps answering on local limits and /ready says degraded;
    fail_closed answers 503 and /ready is 503. Redis back: normal without a restart."""
    redis = private_redis[0]
    port = int(redis.address.rsplit(":", 1)[1].split("/")[0])
    settings = gateway_settings(tmp_path, upstream.url, redis_url=redis.address,
                                quota_rpm_mode=mode, quota_tokens_mode=mode,
                                redis_timeout_s=0.2, cache_enabled=False)
    async with running_gateway(settings) as gw:
        assert await _ask(gw, "t") == 200
        assert (await gw.client.get("/ready")).json()["status"] == "ok"
        await asyncio.to_thread(devservices.stop, redis)
        assert await _ask(gw, "t") == during_outage
        ready = await gw.client.get("/ready")
        assert ready.status_code == ready_status
        assert ready.json()["checks"]["quota_rpm"].startswith("degraded")
        metrics = (await gw.client.get("/metrics")).text
        assert 'ragward_gateway_quota_degraded{control="rpm"} 1.0' in metrics
        private_redis.append(await asyncio.to_thread(devservices.start_redis, port=port))
        async with asyncio.timeout(15):
            while (await gw.client.get("/ready")).json()["status"] != "ok":
                await asyncio.sleep(0.2)
                await _ask(gw, "t")  # a request lets the limiter probe Redis
        assert await _ask(gw, "t") == 200
