"""RedisQuota against the session's real Redis: the contract's quota behaviour.

Every test runs twice: on one Redis server and on a three-node Redis Cluster
(``redis+cluster://``), through the gateway's own connector, so quotas and
reservations are proved to behave the same on both. Each test uses its own key
prefix (``unique``). Short windows (``window_s``) let tests cross window
boundaries in seconds; the clock is always Redis' TIME.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.autopipeline import AutoPipeline
from gateway.cache import RedisCache, cache_key
from gateway.configuration import quota_config
from gateway.pipeline import admit_and_look_up
from gateway.quota import LUA_CIVIL_FROM_DAYS, Admission, QuotaConfig, RedisQuota, make_quota
from gateway.redis_client import RedisClient, RedisConfig, redis_connection
from ragward.errors import QuotaExceeded
from ragward.settings import load_settings

pytestmark = pytest.mark.redis


@pytest.fixture(params=["server", "cluster"])
async def client(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[RedisClient]:
    """The gateway's Redis client for one server, then for a Redis Cluster."""
    url = redis_url if request.param == "server" else request.getfixturevalue("redis_cluster_url")
    async with redis_connection(RedisConfig(url=url), socket_timeout=1.0,
                                socket_connect_timeout=1.0) as redis:
        yield redis


QuotaFor = Callable[..., RedisQuota]


@pytest.fixture
async def quota_for(
    client: RedisClient, unique: str
) -> AsyncIterator[QuotaFor]:
    """Builds RedisQuotas under the test's own key prefix; closes them even if the test fails."""
    made: list[RedisQuota] = []

    def build(*, window_s: float = 60.0, rpm: int = 600, tokens_per_day: int = 2_000_000,
              redis_timeout_s: float = 0.25) -> RedisQuota:
        config = QuotaConfig(rpm=rpm, tokens_per_day=tokens_per_day,
                             redis_timeout_s=redis_timeout_s)
        made.append(RedisQuota(client, config, key_prefix=f"test:{unique}:",
                               window_s=window_s))
        return made[-1]

    try:
        yield build
    finally:
        for quota in made:
            await quota.close()


async def test_eleventh_request_in_a_10_per_minute_window_gets_429_headers(
    client: RedisClient, quota_for: QuotaFor, unique: str
) -> None:
    """Ten requests pass with falling X-RateLimit-Remaining; the 11th raises QuotaExceeded
    whose headers carry Retry-After, the limit, 0 remaining and the reset epoch."""
    quota = quota_for(rpm=10)
    admitted = [await quota.admit("acme", 0) for _ in range(10)]
    assert [a.rpm_remaining for a in admitted] == list(range(9, -1, -1))
    assert all(a.backend == "redis" and not a.degraded for a in admitted)
    first = admitted[0].admitted_at
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 0)
    exc = caught.value
    headers = exc.headers()
    print("11th request:", exc.status, exc.message, headers)
    assert exc.status == 429 and "requests per minute" in exc.message
    assert headers["X-RateLimit-Limit"] == "10"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset"] == str(math.ceil(first + 60))
    assert 59 <= int(headers["Retry-After"]) <= 60
    assert admitted[-1].headers()["X-RateLimit-Reset"] == str(math.ceil(first + 60))


async def test_the_clock_is_redis_time(
    client: RedisClient, quota_for: QuotaFor, unique: str
) -> None:
    """Admissions are stamped with the server's TIME, so replicas' own clocks do not matter;
    keys carry their own expiry (window + 1 s; the day's budget until the next day ends)."""
    quota = quota_for()
    seconds, micros = await client.time()
    admission = await quota.admit("acme", 25)
    assert abs(admission.admitted_at - (seconds + micros / 1e6)) < 0.5
    assert admission.day == (date(1970, 1, 1)
                             + timedelta(days=int(admission.admitted_at // 86400))).isoformat()
    window_ttl = await client.pttl(f"test:{unique}:{{acme}}:rpm")
    assert 60_000 < window_ttl <= 61_000
    token_ttl = await client.ttl(quota.token_key("acme", admission.day))
    assert 86_400 < token_ttl <= 2 * 86_400


async def test_window_boundary_lets_no_burst_through(
    client: RedisClient, quota_for: QuotaFor, unique: str
) -> None:
    """A burst that fills a 2 s window is followed by refusals until the burst itself
    leaves the window; a fixed window would have reset and admitted a second burst."""
    quota = quota_for(window_s=2.0, rpm=5)
    burst = [await quota.admit("acme", 0) for _ in range(5)]
    await asyncio.sleep(1.2)  # past any 1 s fixed-window boundary, inside the sliding window
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 0)
    assert caught.value.retry_after == 1
    assert caught.value.reset == math.ceil(burst[0].admitted_at + 2.0)
    await asyncio.sleep(max(0.0, burst[-1].admitted_at + 2.05 - time.time()))
    again = [await quota.admit("acme", 0) for _ in range(5)]
    assert again[0].admitted_at - burst[0].admitted_at >= 2.0
    with pytest.raises(QuotaExceeded):
        await quota.admit("acme", 0)


async def test_spread_requests_never_exceed_the_limit_in_any_window_span(
    client: RedisClient, quota_for: QuotaFor, unique: str
) -> None:
    """Requests every 25 ms across four 1 s windows: no window-length span (measured on the
    server's clock) holds more than 4 admissions, and the limiter is not stricter than that."""
    quota = quota_for(window_s=1.0, rpm=4)
    admitted: list[float] = []
    refused = 0
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        try:
            admitted.append((await quota.admit("acme", 0)).admitted_at)
        except QuotaExceeded as exc:
            refused += 1
            assert exc.retry_after == 1 and exc.remaining == 0
        await asyncio.sleep(0.025)
    worst = max(sum(1 for t in admitted[i:] if t < start + 1.0)
                for i, start in enumerate(admitted))
    print(f"admitted={len(admitted)} refused={refused} max in any 1 s span={worst}")
    assert worst <= 4
    assert len(admitted) >= 4 * 4 - 1 and refused > len(admitted)


async def test_100_concurrent_admits_against_a_budget_for_10_admit_exactly_10(
    client: RedisClient, quota_for: QuotaFor, unique: str
) -> None:
    """Token reservations are atomic: 100 concurrent requests each estimating 612 tokens
    against a 6,120-token budget let exactly 10 through; settling frees the unused part.
    (A generous timeout: a loaded machine opening 100 connections must not turn this into
    a fail-open test.)"""
    quota = quota_for(rpm=1000, tokens_per_day=6120, redis_timeout_s=5.0)

    async def one() -> Admission | QuotaExceeded:
        try:
            return await quota.admit("acme", 612)
        except QuotaExceeded as exc:
            return exc

    results = await asyncio.gather(*(one() for _ in range(100)))
    admitted = [r for r in results if isinstance(r, Admission)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    print(f"admitted={len(admitted)} refused={len(refused)}")
    assert quota.status() == {"rpm": False, "tokens": False}
    assert len(admitted) == 10 and len(refused) == 90
    assert all("tokens per day" in exc.message for exc in refused)
    assert sorted(a.tokens_remaining for a in admitted) == [612 * i for i in range(10)]
    usage = await quota.usage("acme")
    assert usage["tokens_per_day"]["reserved"] == 6120
    assert usage["requests_per_minute"]["used"] == 10  # refused requests are not recorded
    await asyncio.gather(*(quota.settle(a, 300) for a in admitted))
    tokens = (await quota.usage("acme"))["tokens_per_day"]
    assert (tokens["used"], tokens["reserved"], tokens["remaining"]) == (3000, 0, 3120)


async def test_settle_release_and_overrun(
    client: RedisClient, quota_for: QuotaFor, unique: str
) -> None:
    """release() returns a failed request's reservation; settle() records real usage even
    above the estimate, after which nothing more is admitted until the next UTC day."""
    quota = quota_for(rpm=1000, tokens_per_day=1000)
    a = await quota.admit("acme", 600)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 600)
    assert caught.value.retry_after == 1  # only the in-flight reservation is in the way
    await quota.release(a)
    await quota.release(a)  # once per admission
    b = await quota.admit("acme", 600)
    await quota.settle(b, 1100)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 1)
    exc = caught.value
    assert "tokens per day" in exc.message
    assert exc.headers()["X-RateLimit-Limit"] == "1000"
    assert exc.headers()["X-RateLimit-Remaining"] == "0"
    assert exc.reset == b.token_reset_at and exc.reset % 86_400 == 0
    assert abs(exc.retry_after - (exc.reset - time.time())) <= 2  # seconds to midnight
    usage = await quota.usage("acme")
    print("usage:", usage)
    assert usage["tokens_per_day"]["used"] == 1100
    assert usage["tokens_per_day"]["reset"].endswith("T00:00:00Z")


async def test_per_tenant_overrides_apply_in_redis(
    client: RedisClient, tmp_path: Path, unique: str
) -> None:
    """A [quotas.tenants.X] override limits that tenant; other tenants keep the default."""
    config = tmp_path / "ragward.toml"
    config.write_text("[quotas.tenants.small]\nrpm = 2\n")
    limits = quota_config(load_settings(config, data_dir=tmp_path, quota_rpm=50))
    quota = make_quota(limits, client, key_prefix=f"test:{unique}:")
    try:
        assert isinstance(quota, RedisQuota)
        for _ in range(2):
            await quota.admit("small", 0)
        with pytest.raises(QuotaExceeded) as caught:
            await quota.admit("small", 0)
        assert caught.value.limit == 2
        assert (await quota.admit("big", 0)).rpm_limit == 50
        assert (await quota.usage("small"))["requests_per_minute"]["limit"] == 2
    finally:
        await quota.close()


async def test_lua_day_names_match_python_dates(client: RedisClient) -> None:
    """The script's days-since-epoch -> YYYY-MM-DD conversion agrees with Python's calendar
    (leap years, century rules) over four centuries around today."""
    days = [*range(-70_000, 80_000, 7), 0, -1, 11_016, 11_015, 47_541, 47_540]  # 2000-02-29..
    script = LUA_CIVIL_FROM_DAYS + """
local out = {}
for i = 1, #ARGV do out[i] = civil(tonumber(ARGV[i])) end
return out
"""
    names = await client.eval(script, 0, *days)
    epoch = date(1970, 1, 1)
    assert [n.decode() for n in names] == [(epoch + timedelta(days=d)).isoformat() for d in days]


class CountingPipeline(AutoPipeline):
    """The gateway's auto-pipeline, noting the size of every batch it sends."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self.batches: list[int] = []

    async def _send(self, batch: list[Any]) -> None:
        self.batches.append(len(batch))
        await super()._send(batch)


async def test_quota_check_and_cache_read_share_one_round_trip(
    client: RedisClient, unique: str
) -> None:
    """The quota check and the cache read of a request (a hit and a miss) leave in one
    batch — one round trip, to one node on a cluster — though neither knows of the
    other; a refused request raises its 429 and hands out nothing."""
    pipeline = CountingPipeline(client)
    quota = RedisQuota(client, QuotaConfig(rpm=1, tokens_per_day=2_000_000),
                       key_prefix=f"test:{unique}:", pipeline=pipeline)
    cache = RedisCache(client, 60, 1.0, prefix=f"cache:{unique}:", pipeline=pipeline)
    hit, miss = (cache_key("acme", "default", "v1", 3, q) for q in ("cached?", "not yet?"))
    await cache.set(hit, b"cached answer")
    pipeline.batches.clear()
    admission, values = await admit_and_look_up(quota, "acme", 5, cache, [hit, miss])
    assert values == [b"cached answer", None]
    assert admission.reserved_tokens == 5 and admission.rpm_remaining == 0
    assert pipeline.batches == [2]
    with pytest.raises(QuotaExceeded):
        await admit_and_look_up(quota, "acme", 5, cache, [hit])
    await quota.close()
    await pipeline.aclose()
