"""RedisQuota when Redis goes away or stalls, on a PRIVATE redis-server per test.

The session's Redis is never touched: each test starts its own instance with
ragward.devservices, stops it, and restarts it on the same port to prove the
quota recovers without a restart of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from gateway.quota import Admission, QuotaConfig, RedisQuota
from ragward import devservices
from ragward.errors import DependencyUnavailable, QuotaExceeded
from tests.services import fail_or_skip

pytestmark = pytest.mark.redis

TIMEOUT_S = 0.2


class PrivateRedis:
    """A redis-server this test owns and may stop and start again at the same address."""

    def __init__(self) -> None:
        self.service: devservices.RunningService | None = devservices.start_redis()
        self.url = self.service.address
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    async def stop(self) -> None:
        service, self.service = self.service, None
        if service is not None:
            await asyncio.to_thread(devservices.stop, service)

    async def start(self) -> None:
        self.service = await asyncio.to_thread(devservices.start_redis, 20.0, self.port)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    try:
        server = PrivateRedis()
    except devservices.ServiceError as exc:
        fail_or_skip("private redis-server", exc)
    try:
        yield server
    finally:
        if server.service is not None:
            devservices.stop(server.service)


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(private_redis.url, socket_timeout=TIMEOUT_S,
                              socket_connect_timeout=TIMEOUT_S)
    try:
        yield redis
    finally:
        await redis.aclose()


MakeQuota = Callable[..., RedisQuota]


@pytest.fixture
async def make(
    client: aioredis.Redis, unique: str
) -> AsyncIterator[MakeQuota]:
    """Builds RedisQuotas on the private Redis and closes them all, even if the test fails."""
    made: list[RedisQuota] = []

    def build(**overrides: Any) -> RedisQuota:
        config = QuotaConfig(rpm=10, tokens_per_day=10_000, expected_replicas=2,
                             redis_timeout_s=TIMEOUT_S, **overrides)
        made.append(RedisQuota(client, config, key_prefix=f"q:{unique}:"))
        return made[-1]

    try:
        yield build
    finally:
        for quota in made:
            await quota.close()


async def wait_until_healthy(quota: RedisQuota, within_s: float = 6.0) -> float:
    started = time.monotonic()
    while quota.degraded:
        assert time.monotonic() - started < within_s, "quota did not recover"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def events(
    logs: Sequence[Mapping[str, Any]], name: str, quota: RedisQuota
) -> list[Mapping[str, Any]]:
    return [entry for entry in logs
            if entry["event"] == name and entry.get("key_prefix") == quota.key_prefix]


async def test_fail_open_falls_back_to_local_limits_and_recovers(
    private_redis: PrivateRedis, client: aioredis.Redis, make: MakeQuota
) -> None:
    """Redis stopped, both controls fail_open: admits keep working at limit / replicas from
    a local limiter that starts from what Redis last reported, status() says degraded, one
    warning is logged (not one per request), settlements that could not be sent are kept;
    Redis back on the same port: the quota switches back by itself, replays them (including
    the real usage of requests admitted locally) and logs the recovery once."""
    quota = make()
    in_flight = await quota.admit("acme", 300)
    assert quota.status() == {"rpm": False, "tokens": False}
    await private_redis.stop()
    with capture_logs() as logs:
        started = time.monotonic()
        outcomes: list[str] = []
        local: list[Admission] = []
        for _ in range(12):
            try:
                admission = await quota.admit("acme", 100)
                assert admission.degraded and admission.backend == "local"
                local.append(admission)
                outcomes.append("ok")
            except QuotaExceeded as exc:
                assert exc.limit == 5  # 10 per minute / 2 expected replicas
                outcomes.append("429")
        elapsed = time.monotonic() - started
        assert quota.status() == {"rpm": True, "tokens": True}
        await quota.settle(in_flight, 250)  # Redis is down: kept for later
        await quota.settle(local[0], 70)  # locally admitted: its usage is kept for Redis too
        assert quota.pending_settlements == 2
        usage = await quota.usage("acme")
        assert usage["degraded"] is True and usage["requests_per_minute"]["limit"] == 5
        print(f"while down: {outcomes} in {elapsed * 1000:.0f} ms; status={quota.status()}")
        # Redis had seen 1 of 10 requests: this replica may admit (10 - 1) // 2 = 4 locally
        assert outcomes == ["ok"] * 4 + ["429"] * 8
        assert elapsed < TIMEOUT_S + 1.0  # one bounded attempt, then no Redis calls

        await private_redis.start()
        recovered_in = await wait_until_healthy(quota)
    print(f"recovered {recovered_in:.2f} s after Redis came back")
    down = events(logs, "quota_store_unavailable", quota)
    up = events(logs, "quota_store_recovered", quota)
    assert len(down) == 1 and len(up) == 1, logs
    assert down[0]["log_level"] == "warning" and down[0]["rpm_mode"] == "fail_open"
    assert up[0]["settlements_replayed"] == 2
    assert quota.status() == {"rpm": False, "tokens": False}
    assert quota.pending_settlements == 0
    back = await quota.admit("acme", 100)
    assert back.backend == "redis" and not back.degraded and back.rpm_limit == 10
    # the restarted Redis is empty: it holds the replayed usage plus the new reservation
    assert await client.hgetall(quota.token_key("acme", back.day)) == {
        b"used": b"320", b"reserved": b"100"}
    await quota.close()


async def test_fail_closed_refuses_with_503_and_recovers(
    private_redis: PrivateRedis, client: aioredis.Redis, make: MakeQuota
) -> None:
    """A fail_closed control makes every request a DependencyUnavailable (503) while Redis
    is down, /v1/usage too, and status() says degraded; Redis back: normal admissions."""
    quota = make(tokens_mode="fail_closed")
    await quota.admit("acme", 10)
    await private_redis.stop()
    for _ in range(3):
        with pytest.raises(DependencyUnavailable) as caught:
            await quota.admit("acme", 10)
    exc = caught.value
    print("fail_closed:", exc.status, exc.code, exc.message)
    assert exc.status == 503 and exc.retriable and "tokens per day" in exc.message
    with pytest.raises(DependencyUnavailable):
        await quota.usage("acme")
    assert quota.status() == {"rpm": True, "tokens": True}
    await private_redis.start()
    await wait_until_healthy(quota)
    admission = await quota.admit("acme", 10)
    assert admission.backend == "redis" and admission.rpm_remaining == 9  # fresh Redis
    await quota.close()


async def test_a_stalled_redis_costs_one_bounded_wait(
    private_redis: PrivateRedis, client: aioredis.Redis, make: MakeQuota
) -> None:
    """Redis accepting connections but not answering (CLIENT PAUSE): the admit gives up
    after redis_timeout_s and falls back; once Redis answers again the probe restores it."""
    quota = make()
    await quota.admit("acme", 0)
    pauser = aioredis.from_url(private_redis.url)
    try:
        await pauser.client_pause(1500, all=True)
        started = time.monotonic()
        admission = await quota.admit("acme", 0)
        waited = time.monotonic() - started
        print(f"stalled Redis: admit answered from the fallback after {waited * 1000:.0f} ms")
        assert admission.degraded and TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 0.3
        started = time.monotonic()
        await quota.admit("acme", 0)  # degraded: no further waiting on Redis
        assert time.monotonic() - started < 0.05
        await wait_until_healthy(quota)
    finally:
        await pauser.aclose()
    assert (await quota.admit("acme", 0)).backend == "redis"
    await quota.close()


async def test_close_stops_the_probe(
    private_redis: PrivateRedis, client: aioredis.Redis, make: MakeQuota
) -> None:
    """close() while degraded cancels and awaits the recovery probe (no stray task)."""
    quota = make()
    await private_redis.stop()
    await quota.admit("acme", 0)
    assert quota.degraded
    probes = [t for t in asyncio.all_tasks() if t.get_name() == "ragward-quota-redis-probe"]
    assert len(probes) == 1
    await quota.close()
    assert probes[0].done()
