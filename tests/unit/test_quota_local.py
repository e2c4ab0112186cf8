"""LocalQuota: the in-process quotas (embedded mode and the fail-open fallback).

A fake clock drives the 60 s window and the UTC day, so these run in
milliseconds and pin the exact arithmetic shared with RedisQuota.
"""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import pytest

from gateway.configuration import quota_config
from gateway.quota import Admission, LocalQuota, QuotaConfig, QuotaLimiter, Seed, make_quota
from ragward.errors import QuotaExceeded
from ragward.settings import load_settings

DAY = 86_400
T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z, mid-day


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock, *, divisor: int = 1, rpm: int = 600,
         tokens_per_day: int = 2_000_000) -> LocalQuota:
    return LocalQuota(QuotaConfig(rpm=rpm, tokens_per_day=tokens_per_day), clock=clock,
                      divisor=divisor)


async def test_eleventh_request_in_a_10_per_minute_window_is_refused() -> None:
    """Ten requests pass; the 11th raises QuotaExceeded whose headers say when to come back."""
    clock = FakeClock()
    quota = make(clock, rpm=10)
    seen: list[Admission] = []
    for i in range(10):
        clock.now = T0 + i * 2  # requests at 0, 2, ..., 18 s
        seen.append(await quota.admit("acme", 0))
    assert [a.rpm_remaining for a in seen] == list(range(9, -1, -1))
    assert seen[-1].headers() == {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0",
                                  "X-RateLimit-Reset": str(math.ceil(T0 + 60))}
    clock.now = T0 + 20.5
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 0)
    exc = caught.value
    assert "requests per minute" in exc.message
    # the oldest request (t=0) leaves the window at t=60: 39.5 s from now, rounded up
    assert exc.headers() == {"Retry-After": "40", "X-RateLimit-Limit": "10",
                             "X-RateLimit-Remaining": "0",
                             "X-RateLimit-Reset": str(math.ceil(T0 + 60))}
    assert exc.status == 429
    clock.now = T0 + 60.001  # the first request has left the window: exactly one slot
    await quota.admit("acme", 0)
    with pytest.raises(QuotaExceeded):
        await quota.admit("acme", 0)


async def test_a_window_boundary_lets_no_burst_through() -> None:
    """Ten at 0:59 and more at 1:01 (a fixed window's reset) are refused until 1:59."""
    burst = T0 - T0 % 60 + 59  # second 59 of a wall-clock minute
    clock = FakeClock(burst)
    quota = make(clock, rpm=10)
    for _ in range(10):
        await quota.admit("acme", 0)
    for offset in (2, 30, 59.9):
        clock.now = burst + offset
        with pytest.raises(QuotaExceeded):
            await quota.admit("acme", 0)
    clock.now = burst + 60.0001
    for _ in range(10):
        await quota.admit("acme", 0)


async def test_no_60_s_span_ever_holds_more_than_the_limit() -> None:
    """Random arrivals over 10 minutes: every 60 s span holds <= limit admissions,
    and a refusal only happens when the preceding 60 s really hold the limit."""
    rng = random.Random(6)
    clock = FakeClock()
    quota = make(clock, rpm=25)
    admitted: list[float] = []
    refused = 0
    while clock.now < T0 + 600:
        clock.now += rng.expovariate(1.0)  # about 60 arrivals per minute against 25
        try:
            await quota.admit("acme", 0)
            admitted.append(clock.now)
        except QuotaExceeded:
            refused += 1
            in_window = [t for t in admitted if t > clock.now - 60]
            assert len(in_window) == 25
    for i, start in enumerate(admitted):
        assert sum(1 for t in admitted[i:] if t < start + 60) <= 25
    assert refused > 0 and len(admitted) >= 25 * 9


async def test_concurrent_requests_never_overspend_the_token_budget() -> None:
    """100 concurrent admits against a budget that fits exactly 10 estimates: 10 pass."""
    quota = make(FakeClock(), rpm=1000, tokens_per_day=10 * 612)

    async def one() -> Admission | None:
        await asyncio.sleep(0)
        try:
            return await quota.admit("acme", 612)
        except QuotaExceeded as exc:
            assert "tokens per day" in exc.message
            return None

    results = await asyncio.gather(*(one() for _ in range(100)))
    admitted = [a for a in results if a is not None]
    assert len(admitted) == 10
    assert sorted(a.tokens_remaining for a in admitted) == [612 * i for i in range(10)]
    view = await quota.usage("acme")
    assert view["tokens_per_day"] | {"reset": None} == {
        "limit": 6120, "used": 0, "reserved": 6120, "remaining": 0, "day": "2025-06-15",
        "reset_at": 1_750_032_000, "reset": None,
    }


async def test_settle_and_release_return_what_was_not_used() -> None:
    """Settling below the estimate and releasing a failed request free budget again."""
    quota = make(FakeClock(), rpm=1000, tokens_per_day=1000)
    a = await quota.admit("acme", 400)
    b = await quota.admit("acme", 400)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 400)
    # only in-flight reservations stand in the way: retry soon, not at midnight
    assert caught.value.retry_after == 1 and caught.value.remaining == 200
    await quota.settle(a, 150)
    await quota.release(b)
    view = (await quota.usage("acme"))["tokens_per_day"]
    assert (view["used"], view["reserved"], view["remaining"]) == (150, 0, 850)
    await quota.admit("acme", 800)  # fits now
    # settle and release are once per admission: a second call changes nothing
    await quota.settle(a, 999)
    await quota.release(a)
    view = (await quota.usage("acme"))["tokens_per_day"]
    assert (view["used"], view["reserved"]) == (150, 800)


async def test_the_day_ends_over_budget_only_by_real_usage() -> None:
    """An answer longer than estimated is recorded in full; then nothing more is admitted
    and Retry-After points at the next UTC midnight."""
    clock = FakeClock()
    quota = make(clock, rpm=1000, tokens_per_day=1000)
    admission = await quota.admit("acme", 900)
    await quota.settle(admission, 1300)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 1)
    midnight = (math.floor(T0 / DAY) + 1) * DAY
    assert caught.value.headers() == {
        "Retry-After": str(math.ceil(midnight - T0)), "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(midnight)}
    assert "tokens per day" in caught.value.message
    clock.now = midnight + 1  # a new UTC day, a new budget
    fresh = await quota.admit("acme", 900)
    assert fresh.day == "2025-06-16" and fresh.tokens_remaining == 100


async def test_a_settlement_after_midnight_lands_on_its_own_day() -> None:
    """A request admitted before midnight and settled after it does not touch the new day."""
    clock = FakeClock(math.floor(T0 / DAY) * DAY + DAY - 1)
    quota = make(clock, rpm=1000, tokens_per_day=1000)
    late = await quota.admit("acme", 500)
    clock.now += 2
    await quota.settle(late, 700)
    view = (await quota.usage("acme"))["tokens_per_day"]
    assert (view["day"], view["used"], view["reserved"]) == ("2025-06-16", 0, 0)


async def test_both_controls_exhausted_reports_the_longer_wait() -> None:
    """With the window full and the day's budget spent, the 429 speaks of tokens per day."""
    quota = make(FakeClock(), rpm=1, tokens_per_day=100)
    admission = await quota.admit("acme", 100)
    await quota.settle(admission, 100)
    with pytest.raises(QuotaExceeded) as caught:
        await quota.admit("acme", 10)
    assert "tokens per day" in caught.value.message
    assert caught.value.retry_after > 60


async def test_per_tenant_overrides_and_the_replica_divisor(tmp_path: Path) -> None:
    """[quotas.tenants.X] overrides apply per tenant; a fallback divides limits by replicas."""
    config = tmp_path / "ragward.toml"
    config.write_text("[quotas.tenants.acme]\nrpm = 3\ntokens_per_day = 5000\n")
    limits = quota_config(load_settings(config, data_dir=tmp_path, quota_rpm=7))
    clock = FakeClock()
    quota = LocalQuota(limits, clock=clock)
    assert quota.limits("acme") == (3, 5000)
    assert quota.limits("other") == (7, 2_000_000)
    halved = LocalQuota(limits, clock=clock, divisor=2)
    assert halved.limits("acme") == (1, 2500) and halved.limits("other") == (3, 1_000_000)
    for _ in range(3):
        await quota.admit("acme", 0)
    with pytest.raises(QuotaExceeded):
        await quota.admit("acme", 0)
    await quota.admit("other", 0)  # tenants do not share a window


async def test_make_quota_without_redis_is_local_and_never_degraded(tmp_path: Path) -> None:
    """Embedded mode: make_quota(config, None) is a LocalQuota that reports healthy."""
    quota = make_quota(quota_config(load_settings(data_dir=tmp_path)), None)
    assert isinstance(quota, LocalQuota) and isinstance(quota, QuotaLimiter)
    assert quota.status() == {"rpm": False, "tokens": False}
    admission = await quota.admit("acme", 10)
    assert admission.backend == "local" and not admission.degraded
    view = await quota.usage("acme")
    assert view["requests_per_minute"]["used"] == 1
    assert view["requests_per_minute"]["reset"].endswith("Z")
    await quota.close()


async def test_negative_token_counts_are_programming_errors() -> None:
    """A negative estimate or actual count is rejected loudly, not silently credited."""
    quota = make(FakeClock())
    with pytest.raises(ValueError):
        await quota.admit("acme", -1)
    admission = await quota.admit("acme", 1)
    with pytest.raises(ValueError):
        await quota.settle(admission, -5)


async def test_a_seeded_fallback_admits_only_its_share_of_what_was_left() -> None:
    """The fail-open fallback starts from what Redis last reported: with 2 replicas, 7 of 10
    requests and 8,000 of 10,000 tokens already spent, a replica admits (10-7)//2 = 1 request
    and (10,000-8,000)//2 = 1,000 tokens, not a fresh half of each limit."""
    clock = FakeClock()
    limits = QuotaConfig(rpm=10, tokens_per_day=10_000)
    seed = Seed(day="2025-06-15", committed_tokens=8000, window_count=7, seen_at=T0 - 5,
                rpm_limit=10, token_limit=10_000)
    fallback = LocalQuota(limits, clock=clock, divisor=2, degraded=True,
                          seed=lambda tenant: seed if tenant == "acme" else None)
    first = await fallback.admit("acme", 1000)
    assert first.degraded and first.rpm_limit == 5 and first.rpm_remaining == 0
    assert first.tokens_remaining == 0
    with pytest.raises(QuotaExceeded):
        await fallback.admit("acme", 0)
    clock.now = T0 - 5 + 60.001  # the seeded requests leave the window like real ones
    with pytest.raises(QuotaExceeded) as caught:
        await fallback.admit("acme", 1)
    assert "tokens per day" in caught.value.message
    fresh = await fallback.admit("other", 5000)  # a tenant Redis never mentioned
    assert fresh.tokens_remaining == 0 and fresh.rpm_remaining == 4
