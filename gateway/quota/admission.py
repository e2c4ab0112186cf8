"""What every quota limiter shares: the admission, the protocol, the verdict.

:class:`QuotaLimiter` is the interface the request path uses; it speaks of
requests and tokens only. :class:`Check` is one evaluation of both controls,
from Redis or from local state, and :func:`verdict` turns it into an
:class:`Admission` or the :class:`~ragward.errors.QuotaExceeded` that names the
control the client must wait for. :func:`usage_view` is ``GET /v1/usage``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from ragward.errors import QuotaExceeded
from ragward.settings import QuotaMode, TenantQuota

__all__ = ["DAY_S", "DEFAULT_WINDOW_S", "Admission", "Backend", "Check", "QuotaConfig",
           "QuotaLimiter", "Seed", "check_estimate", "day_of", "day_start", "usage_view",
           "verdict"]

DAY_S = 86_400
DEFAULT_WINDOW_S = 60.0

Backend = Literal["redis", "local"]


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    """The limits every limiter enforces, and what it does while Redis is unreachable."""

    rpm: int  # requests per window (a minute in production) per tenant
    tokens_per_day: int
    rpm_mode: QuotaMode = "fail_open"
    tokens_mode: QuotaMode = "fail_open"
    expected_replicas: int = 1  # a fail-open fallback enforces limit / this
    redis_timeout_s: float = 0.25  # per Redis call, then the control's mode decides
    tenants: Mapping[str, TenantQuota] = field(default_factory=dict)  # per-tenant overrides

    def limits(self, tenant: str) -> tuple[int, int]:
        """(requests per window, tokens per day) for a tenant, its overrides applied."""
        override = self.tenants.get(tenant)
        rpm = override.rpm if override and override.rpm else self.rpm
        tokens = (override.tokens_per_day if override and override.tokens_per_day
                  else self.tokens_per_day)
        return rpm, tokens

    def modes(self) -> dict[str, QuotaMode]:
        """Each control's mode, by the names :meth:`QuotaLimiter.status` reports."""
        return {"rpm": self.rpm_mode, "tokens": self.tokens_mode}


@dataclass
class Admission:
    """What :meth:`QuotaLimiter.admit` reserved; pass it back to settle or release."""

    tenant: str
    reserved_tokens: int
    rpm_limit: int
    rpm_remaining: int
    reset_at: int  # epoch s: when the oldest request leaves the window (rpm frees up)
    token_limit: int
    tokens_remaining: int  # after this reservation
    day: str  # UTC day the reservation was made against, "YYYY-MM-DD"
    degraded: bool  # admitted by the local fallback because Redis did not answer
    admitted_at: float  # epoch s, the quota store's clock
    token_reset_at: int  # epoch s: next UTC midnight, when the day's budget renews
    backend: Backend = "redis"
    finished: bool = field(default=False, compare=False)

    def headers(self) -> dict[str, str]:
        """The request-rate headers for a successful answer."""
        return {
            "X-RateLimit-Limit": str(self.rpm_limit),
            "X-RateLimit-Remaining": str(max(0, self.rpm_remaining)),
            "X-RateLimit-Reset": str(self.reset_at),
        }


@runtime_checkable
class QuotaLimiter(Protocol):
    async def admit(self, tenant: str, estimated_tokens: int) -> Admission:
        """Check and record a request and reserve its token estimate, atomically."""
        ...

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        """Replace the reservation by the real usage (once per admission)."""
        ...

    async def release(self, admission: Admission) -> None:
        """Give the reservation back: the request failed (once per admission)."""
        ...

    async def usage(self, tenant: str) -> dict[str, Any]:
        """Limits, used, remaining and reset times, for ``GET /v1/usage``."""
        ...

    def status(self) -> dict[str, bool]:
        """``{"rpm": degraded, "tokens": degraded}``."""
        ...

    async def close(self) -> None: ...


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def day_of(epoch_s: float) -> tuple[str, int]:
    number = math.floor(epoch_s / DAY_S)
    return (date(1970, 1, 1) + timedelta(days=number)).isoformat(), number


@functools.lru_cache(maxsize=4)  # asked on every settlement, of today (or yesterday)
def day_start(day: str) -> int:
    return (date.fromisoformat(day) - date(1970, 1, 1)).days * DAY_S


@dataclass(frozen=True)
class Check:
    """One evaluation of both controls, from Redis or the local state."""

    rpm_ok: bool
    tokens_ok: bool
    count: int  # requests in the window (including this one when admitted)
    now: float  # epoch s
    rpm_reset: float  # epoch s when the window next frees a slot
    used: int
    reserved: int  # including this reservation when admitted
    day: str
    day_number: int


@dataclass(frozen=True)
class Seed:
    """What Redis last reported for a tenant; starts the fail-open fallback from there."""

    day: str
    committed_tokens: int  # used + reserved on that day
    window_count: int  # requests in the window
    seen_at: float  # local clock when Redis said so
    rpm_limit: int
    token_limit: int


def verdict(
    check: Check, tenant: str, rpm_limit: int, token_limit: int, estimate: int,
    *, degraded: bool, backend: Backend,
) -> Admission:
    """Turn a check into an Admission, or raise QuotaExceeded naming the control."""
    token_reset = (check.day_number + 1) * DAY_S
    if check.rpm_ok and check.tokens_ok:
        return Admission(
            tenant=tenant,
            reserved_tokens=estimate,
            rpm_limit=rpm_limit,
            rpm_remaining=max(0, rpm_limit - check.count),
            reset_at=math.ceil(check.rpm_reset),
            token_limit=token_limit,
            tokens_remaining=max(0, token_limit - check.used - check.reserved),
            day=check.day,
            degraded=degraded,
            admitted_at=check.now,
            token_reset_at=token_reset,
            backend=backend,
        )
    refusals: list[QuotaExceeded] = []
    if not check.rpm_ok:
        wait = max(1, math.ceil(check.rpm_reset - check.now))
        refusals.append(QuotaExceeded(
            f"requests per minute quota exceeded: {rpm_limit} requests per window; "
            f"retry in {wait} s",
            retry_after=wait, limit=rpm_limit,
            remaining=max(0, rpm_limit - check.count), reset=math.ceil(check.rpm_reset),
        ))
    if not check.tokens_ok:
        committed = check.used + check.reserved
        if check.used + estimate <= token_limit:
            # Only in-flight reservations stand in the way; they settle soon.
            wait, why = 1, "the rest is reserved by requests in flight"
        elif estimate > token_limit:
            wait, why = max(1, math.ceil(token_reset - check.now)), (
                "the request's estimate alone exceeds the daily budget")
        else:
            wait, why = max(1, math.ceil(token_reset - check.now)), "the budget renews at 00:00 UTC"
        refusals.append(QuotaExceeded(
            f"tokens per day quota exceeded: {committed} of {token_limit} tokens used or "
            f"reserved on {check.day} (UTC), this request needs about {estimate}; {why}",
            retry_after=wait, limit=token_limit,
            remaining=max(0, token_limit - committed), reset=token_reset,
        ))
    # Both exhausted: report the one the client must wait longest for.
    raise max(refusals, key=lambda exc: exc.retry_after)


def check_estimate(estimated_tokens: int) -> None:
    if estimated_tokens < 0:
        raise ValueError("estimated_tokens must be >= 0")


def usage_view(
    tenant: str, rpm_limit: int, window_s: float, count: int, rpm_reset: float,
    token_limit: int, used: int, reserved: int, day: str, day_number: int, *, degraded: bool,
) -> dict[str, Any]:
    token_reset = (day_number + 1) * DAY_S
    return {
        "tenant": tenant,
        "degraded": degraded,
        "requests_per_minute": {
            "limit": rpm_limit,
            "used": count,
            "remaining": max(0, rpm_limit - count),
            "window_seconds": window_s,
            "reset_at": math.ceil(rpm_reset),
            "reset": iso(math.ceil(rpm_reset)),
        },
        "tokens_per_day": {
            "limit": token_limit,
            "used": used,
            "reserved": reserved,
            "remaining": max(0, token_limit - used - reserved),
            "day": day,
            "reset_at": token_reset,
            "reset": iso(token_reset),
        },
    }
