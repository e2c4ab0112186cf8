"""Per-tenant quotas: a sliding-window request rate and a daily token budget.

Two controls, checked together in one atomic step by :meth:`QuotaLimiter.admit`:

* **requests per minute** — a true sliding window (a log of admitted request
  timestamps), so no 60 s span ever admits more than the limit; a fixed window
  would let twice the limit through around its boundary.
* **tokens per day** — a reservation budget per UTC day. ``admit`` reserves the
  gateway's estimate (question tokens + answer allowance) and refuses a request
  whose estimate no longer fits; ``settle`` swaps the reservation for the real
  usage; ``release`` hands it back when the request failed. Concurrent requests
  therefore never admit past the budget; the day can only end over budget by
  what admitted requests really used beyond their estimate.

Refused requests are not recorded in the window; admitted requests stay in it
even when they later fail (``release`` gives back tokens, not the request).
``settle``/``release`` act once per :class:`Admission`; later calls are no-ops.

Implementations:

* :class:`RedisQuota` — state in Redis, so every gateway replica enforces one
  combined limit. Each operation is one ``EVALSHA`` of a Lua script (loaded
  once, NOSCRIPT falls back to loading it), which reads the clock with
  ``redis.call('TIME')`` so replicas with skewed clocks agree. Keys expire by
  themselves (the window log after one window, a day's budget two days after the
  day began).
* :class:`LocalQuota` — the same semantics in process: embedded mode, and the
  fallback :class:`RedisQuota` uses when Redis is down and a control is
  ``fail_open``.

Redis down or slower than ``settings.redis_timeout_s``: when either control is
``fail_closed`` the request gets :class:`~ragward.errors.DependencyUnavailable`
(503); when both are ``fail_open`` a :class:`LocalQuota` at limit ÷
``settings.quota_expected_replicas`` takes over, starting each tenant from the
counts Redis last reported (so a replica admits its share of what was left).
Either way ``status()`` reports the controls degraded, one warning is logged
per transition, settlements that could not reach Redis — and the real usage of
requests admitted locally — are kept and replayed, and a background probe (at
most once per ``probe_interval_s``; it reloads the scripts) switches back as
soon as Redis answers.
While degraded no request waits on Redis. An admit that timed out may still
have been applied by Redis (if the server was already running it): that
request then counts twice — once locally, once in Redis — erring strict.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import structlog
from redis.exceptions import RedisError

from gateway.autopipeline import AutoPipeline
from ragward.errors import DependencyUnavailable, QuotaExceeded

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ragward.settings import Settings



def _log() -> Any:
    # Looked up per use (only on state transitions): a logger cached at import would
    # escape structlog's test capture and any configuration done after import.
    return structlog.get_logger(__name__)


DAY_S = 86_400
DEFAULT_KEY_PREFIX = "ragward:quota:"
DEFAULT_WINDOW_S = 60.0
#: a day's budget key lives until the end of the following UTC day
TOKEN_KEY_LIFETIME_DAYS = 2
#: settlements kept while Redis is unreachable, replayed when it answers again
MAX_PENDING_SETTLEMENTS = 100_000

Backend = Literal["redis", "local"]

# Anything that means "Redis did not answer properly": refused or dropped
# connections, timeouts (ours or the socket's), a loading or read-only server.
_REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


# ----------------------------------------------------------------- Lua scripts

# Days since 1970-01-01 -> "YYYY-MM-DD" (H. Hinnant's civil_from_days); Lua in
# Redis has no date library, and the day must come from the server's clock.
LUA_CIVIL_FROM_DAYS = """
local function civil(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end
"""

# KEYS[1] window log (sorted set: score = admission time in µs, member unique)
# KEYS[2] token budget key base; the script appends the server's UTC day
#         (same hash slot: both keys carry the tenant as hash tag)
# ARGV: rpm_limit, window_us, member, token_limit, estimate, key_lifetime_days
# Returns "rpm_ok tokens_ok window_count now_us rpm_reset_us used reserved day
#          day_number" (space-separated); counts are after recording when admitted.
LUA_ADMIT = LUA_CIVIL_FROM_DAYS + """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_us = sec * 1000000 + tonumber(t[2])
local rpm_limit = tonumber(ARGV[1])
local window_us = tonumber(ARGV[2])
local token_limit = tonumber(ARGV[4])
local estimate = tonumber(ARGV[5])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_us - window_us)
local count = redis.call('ZCARD', KEYS[1])
local rpm_ok = count < rpm_limit

local day_number = math.floor(sec / 86400)
local day = civil(day_number)
local token_key = KEYS[2] .. day
local budget = redis.call('HMGET', token_key, 'used', 'reserved')
local used = tonumber(budget[1]) or 0
local reserved = tonumber(budget[2]) or 0
local tokens_ok = used + reserved + estimate <= token_limit

local rpm_reset_us
if rpm_ok and tokens_ok then
  redis.call('ZADD', KEYS[1], now_us, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window_us / 1000) + 1000)
  count = count + 1
  if estimate > 0 then
    reserved = redis.call('HINCRBY', token_key, 'reserved', estimate)
    redis.call('EXPIREAT', token_key, (day_number + tonumber(ARGV[6])) * 86400)
  end
end
if rpm_ok then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  rpm_reset_us = (tonumber(oldest[2]) or now_us) + window_us
else
  -- the entry whose departure brings the count below the limit
  local nth = redis.call('ZRANGE', KEYS[1], count - rpm_limit, count - rpm_limit, 'WITHSCORES')
  rpm_reset_us = tonumber(nth[2]) + window_us
end
-- one bulk string, not an array: a single reply line is cheaper for the client to parse
local summary = string.format('%d %d %d %.0f %.0f %d %d %s %d', rpm_ok and 1 or 0,
                              tokens_ok and 1 or 0, count, now_us, rpm_reset_us, used, reserved,
                              day, day_number)
if #KEYS < 3 then return summary end
-- KEYS[3..]: answer-cache entries the caller wants in the same round trip (read only)
local peek = {}
for i = 3, #KEYS do peek[#peek + 1] = KEYS[i] end
return {summary, redis.call('MGET', unpack(peek))}
"""

# KEYS[1] the admission day's budget key
# ARGV: reserved (to give back), actual (to record), expire_at (epoch s)
# A reservation that already expired with its day is not given back twice.
LUA_SETTLE = """
local give_back = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved')) or 0
if give_back > reserved then give_back = reserved end
if give_back > 0 then reserved = redis.call('HINCRBY', KEYS[1], 'reserved', -give_back) end
local used
if actual > 0 then
  used = redis.call('HINCRBY', KEYS[1], 'used', actual)
else
  used = tonumber(redis.call('HGET', KEYS[1], 'used')) or 0
end
if used > 0 or reserved > 0 then redis.call('EXPIREAT', KEYS[1], ARGV[3]) end
return used
"""

# Read-only view for GET /v1/usage.
# KEYS[1] window log, KEYS[2] token budget key base; ARGV: window_us
LUA_USAGE = LUA_CIVIL_FROM_DAYS + """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_us = sec * 1000000 + tonumber(t[2])
local window_us = tonumber(ARGV[1])
local count = redis.call('ZCOUNT', KEYS[1], '(' .. (now_us - window_us), '+inf')
local reset_us = now_us
if count > 0 then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now_us - window_us), '+inf',
                            'WITHSCORES', 'LIMIT', 0, 1)
  reset_us = tonumber(oldest[2]) + window_us
end
local day_number = math.floor(sec / 86400)
local day = civil(day_number)
local budget = redis.call('HMGET', KEYS[2] .. day, 'used', 'reserved')
return {count, now_us, reset_us, tonumber(budget[1]) or 0, tonumber(budget[2]) or 0,
        day, day_number}
"""


# ----------------------------------------------------------------- data


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
    # Values of the keys passed as ``peek`` to admit(), read in the same round trip;
    # None when they were not read (local quota, or Redis unavailable).
    peeked: list[bytes | None] | None = field(default=None, compare=False, repr=False)

    def headers(self) -> dict[str, str]:
        """The request-rate headers for a successful answer."""
        return {
            "X-RateLimit-Limit": str(self.rpm_limit),
            "X-RateLimit-Remaining": str(max(0, self.rpm_remaining)),
            "X-RateLimit-Reset": str(self.reset_at),
        }


@runtime_checkable
class QuotaLimiter(Protocol):
    async def admit(
        self, tenant: str, estimated_tokens: int, *, peek: Sequence[str] = ()
    ) -> Admission:
        """Check and record a request and reserve its token estimate, atomically.

        ``peek`` names Redis keys to read in the same round trip (the answer cache's
        entries for this request); their values land in ``Admission.peeked``."""
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


# ----------------------------------------------------------------- shared logic


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _day_of(epoch_s: float) -> tuple[str, int]:
    number = math.floor(epoch_s / DAY_S)
    return (date(1970, 1, 1) + timedelta(days=number)).isoformat(), number


def _day_start(day: str) -> int:
    return (date.fromisoformat(day) - date(1970, 1, 1)).days * DAY_S


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _Check:
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


def _verdict(
    check: _Check, tenant: str, rpm_limit: int, token_limit: int, estimate: int,
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


def _check_estimate(estimated_tokens: int) -> None:
    if estimated_tokens < 0:
        raise ValueError("estimated_tokens must be >= 0")


# ----------------------------------------------------------------- LocalQuota


class LocalQuota:
    """In-process quotas with the same semantics as :class:`RedisQuota`.

    Every operation is synchronous under a lock, so it is atomic for asyncio
    tasks and threads alike. ``divisor`` splits each limit (floor, at least 1):
    the fail-open fallback runs at limit ÷ expected replicas so that the
    replicas together stay within the configured limit. ``seed`` (fallback only)
    gives what Redis last reported for a tenant: the tenant's local window and
    budget then start at the share of it already spent, so each replica admits
    at most its share of what was *left*, not a fresh limit ÷ replicas.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        divisor: int = 1,
        clock: Callable[[], float] = time.time,
        backend: Backend = "local",
        degraded: bool = False,
        seed: Callable[[str], Seed | None] | None = None,
    ) -> None:
        if window_s <= 0 or divisor < 1:
            raise ValueError("window_s must be > 0 and divisor >= 1")
        self._settings = settings
        self._window = window_s
        self._divisor = divisor
        self._clock = clock
        self._backend = backend
        self._degraded = degraded  # marks admissions made as a fallback
        self._seed = seed
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {}
        self._budgets: dict[tuple[str, str], list[int]] = {}  # (tenant, day) -> [used, reserved]
        self._current_day = ""

    def limits(self, tenant: str) -> tuple[int, int]:
        """(requests per window, tokens per day) this instance enforces for a tenant."""
        rpm, tokens = self._settings.quota_for(tenant)
        return max(1, rpm // self._divisor), max(1, tokens // self._divisor)

    def _window_of(self, tenant: str, now: float) -> deque[float]:
        log_ = self._windows.get(tenant)
        if log_ is None:
            if len(self._windows) > 10_000:  # forget idle tenants
                for name in [n for n, q in self._windows.items()
                             if not q or q[-1] <= now - self._window]:
                    del self._windows[name]
            log_ = self._windows[tenant] = deque()
            seed = self._seed(tenant) if self._seed else None
            if seed is not None and seed.seen_at > now - self._window:
                local_limit = max(1, seed.rpm_limit // self._divisor)
                left = max(0, seed.rpm_limit - seed.window_count) // self._divisor
                log_.extend([min(seed.seen_at, now)] * max(0, local_limit - left))
        cutoff = now - self._window
        while log_ and log_[0] <= cutoff:
            log_.popleft()
        return log_

    def _budget_of(self, tenant: str, day: str) -> list[int]:
        if day != self._current_day:  # a new day: drop budgets older than yesterday
            self._current_day = day
            keep = {day, (date.fromisoformat(day) - timedelta(days=1)).isoformat()}
            for key in [k for k in self._budgets if k[1] not in keep]:
                del self._budgets[key]
        budget = self._budgets.get((tenant, day))
        if budget is None:
            budget = self._budgets[(tenant, day)] = [0, 0]
            seed = self._seed(tenant) if self._seed else None
            if seed is not None and seed.day == day:
                local_limit = max(1, seed.token_limit // self._divisor)
                left = max(0, seed.token_limit - seed.committed_tokens) // self._divisor
                budget[0] = max(0, local_limit - left)
        return budget

    def admit_now(self, tenant: str, estimated_tokens: int) -> Admission:
        """Synchronous :meth:`admit` (the fallback path calls it without awaiting)."""
        _check_estimate(estimated_tokens)
        rpm_limit, token_limit = self.limits(tenant)
        with self._lock:
            now = self._clock()
            log_ = self._window_of(tenant, now)
            count = len(log_)
            rpm_ok = count < rpm_limit
            day, day_number = _day_of(now)
            budget = self._budget_of(tenant, day)
            tokens_ok = budget[0] + budget[1] + estimated_tokens <= token_limit
            if rpm_ok and tokens_ok:
                log_.append(max(now, log_[-1]) if log_ else now)  # the clock may step back
                count += 1
                budget[1] += estimated_tokens
            if rpm_ok:
                rpm_reset = log_[0] + self._window if log_ else now + self._window
            else:
                rpm_reset = log_[count - rpm_limit] + self._window
            check = _Check(rpm_ok, tokens_ok, count, now, rpm_reset, budget[0], budget[1],
                           day, day_number)
        return _verdict(check, tenant, rpm_limit, token_limit, estimated_tokens,
                        degraded=self._degraded, backend=self._backend)

    def settle_now(self, admission: Admission, actual_tokens: int) -> None:
        if actual_tokens < 0:
            raise ValueError("actual_tokens must be >= 0")
        with self._lock:
            if admission.finished:
                return
            admission.finished = True
            budget = self._budgets.get((admission.tenant, admission.day))
            if budget is None:
                if actual_tokens == 0 or admission.day != _day_of(self._clock())[0]:
                    return  # its day is gone: nothing left to adjust
                budget = self._budget_of(admission.tenant, admission.day)
            budget[1] = max(0, budget[1] - admission.reserved_tokens)
            budget[0] += actual_tokens

    async def admit(
        self, tenant: str, estimated_tokens: int, *, peek: Sequence[str] = ()
    ) -> Admission:
        return self.admit_now(tenant, estimated_tokens)

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        self.settle_now(admission, actual_tokens)

    async def release(self, admission: Admission) -> None:
        self.settle_now(admission, 0)

    def usage_now(self, tenant: str) -> dict[str, Any]:
        rpm_limit, token_limit = self.limits(tenant)
        with self._lock:
            now = self._clock()
            log_ = self._window_of(tenant, now)
            count = len(log_)
            rpm_reset = log_[0] + self._window if log_ else now
            day, day_number = _day_of(now)
            used, reserved = self._budget_of(tenant, day)
        return _usage_view(tenant, rpm_limit, self._window, count, rpm_reset, token_limit,
                           used, reserved, day, day_number, degraded=self._degraded)

    async def usage(self, tenant: str) -> dict[str, Any]:
        return self.usage_now(tenant)

    def status(self) -> dict[str, bool]:
        return {"rpm": False, "tokens": False}

    async def close(self) -> None:
        return None


def _usage_view(
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
            "reset": _iso(math.ceil(rpm_reset)),
        },
        "tokens_per_day": {
            "limit": token_limit,
            "used": used,
            "reserved": reserved,
            "remaining": max(0, token_limit - used - reserved),
            "day": day,
            "reset_at": token_reset,
            "reset": _iso(token_reset),
        },
    }


# ----------------------------------------------------------------- RedisQuota


class RedisQuota:
    """Quotas shared by every replica through Redis; see the module docstring.

    ``redis`` is a ``redis.asyncio`` client owned by the caller (the gateway's
    lifespan creates and closes it). ``window_s`` is the sliding window's length:
    60 s in production; tests shorten it to cross window boundaries quickly —
    the clock is always Redis' ``TIME``.
    """

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        window_s: float = DEFAULT_WINDOW_S,
        probe_interval_s: float = 1.0,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._redis = redis
        # Checks and settlements of concurrent requests share round trips.
        self._pipeline = pipeline or AutoPipeline(redis)
        self._settings = settings
        self._prefix = key_prefix
        self._window_s = window_s
        self._window_us = round(window_s * 1_000_000)
        self._timeout = settings.redis_timeout_s
        self._probe_interval = probe_interval_s
        self._admit_script = redis.register_script(LUA_ADMIT)
        self._settle_script = redis.register_script(LUA_SETTLE)
        self._usage_script = redis.register_script(LUA_USAGE)
        self._seen: dict[str, Seed] = {}  # per tenant, what Redis said last
        self._fallback = self._new_fallback()
        self._member_base = os.urandom(6).hex()
        self._sequence = itertools.count()
        self._degraded = False
        self._degraded_since = 0.0
        self._probe_task: asyncio.Task[None] | None = None
        self._pending: deque[tuple[str, int, int, int]] = deque()
        self._dropped_settlements = 0
        self._closed = False

    def _new_fallback(self) -> LocalQuota:
        return LocalQuota(self._settings, window_s=self._window_s,
                          divisor=self._settings.quota_expected_replicas, degraded=True,
                          seed=self._seen.get)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD the Lua scripts in one round trip.

        Optional at start-up (otherwise the first call loads them on NOSCRIPT);
        the recovery probe calls it so a restarted, empty Redis is ready before
        traffic returns to it.
        """
        pipe = self._redis.pipeline(transaction=False)
        for script in (self._admit_script, self._settle_script, self._usage_script):
            pipe.script_load(script.script)
        async with asyncio.timeout(self._timeout):
            await pipe.execute()

    # -- keys ------------------------------------------------------------------
    def _keys(self, tenant: str) -> tuple[str, str]:
        # The tenant is a hash tag: both keys (and every day's budget) share a slot.
        base = f"{self._prefix}{{{tenant}}}"
        return f"{base}:rpm", f"{base}:tokens:"

    @property
    def key_prefix(self) -> str:
        return self._prefix

    def token_key(self, tenant: str, day: str) -> str:
        return self._keys(tenant)[1] + day

    # -- state -----------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        return self._degraded

    @property
    def pending_settlements(self) -> int:
        return len(self._pending)

    def status(self) -> dict[str, bool]:
        return {"rpm": self._degraded, "tokens": self._degraded}

    def _modes(self) -> dict[str, str]:
        return {"rpm": self._settings.quota_rpm_mode, "tokens": self._settings.quota_tokens_mode}

    def _enter_degraded(self, exc: BaseException, during: str) -> None:
        if not self._degraded:
            self._degraded = True
            self._degraded_since = time.monotonic()
            self._fallback = self._new_fallback()  # starts from what Redis said last
            modes = self._modes()
            _log().warning(
                "quota_store_unavailable",
                key_prefix=self._prefix,
                during=during,
                error=type(exc).__name__,
                detail=str(exc)[:200],
                rpm_mode=modes["rpm"],
                tokens_mode=modes["tokens"],
                fallback_divisor=self._settings.quota_expected_replicas,
                effect=("rejecting with 503" if "fail_closed" in modes.values()
                        else "local limits at limit / expected replicas"),
            )
        if self._probe_task is None and not self._closed:
            self._probe_task = asyncio.get_running_loop().create_task(
                self._probe(), name="ragward-quota-redis-probe")

    async def _probe(self) -> None:
        """While degraded, try Redis at most once per interval; switch back when it answers."""
        try:
            while True:
                await asyncio.sleep(self._probe_interval)
                try:
                    await self.load_scripts()
                    replayed = await self._replay_pending()
                except _REDIS_FAILURES:
                    continue
                self._degraded = False
                _log().warning(
                    "quota_store_recovered",
                    key_prefix=self._prefix,
                    degraded_for_s=round(time.monotonic() - self._degraded_since, 3),
                    settlements_replayed=replayed,
                    settlements_dropped=self._dropped_settlements,
                )
                self._dropped_settlements = 0
                return
        finally:
            self._probe_task = None

    async def _replay_pending(self) -> int:
        replayed = 0
        while self._pending:
            key, give_back, actual, expire_at = self._pending[0]
            async with asyncio.timeout(self._timeout):
                await self._settle_script(keys=[key], args=[give_back, actual, expire_at])
            self._pending.popleft()
            replayed += 1
        return replayed

    def _unavailable(self, what: str) -> DependencyUnavailable:
        names = {"rpm": "requests per minute", "tokens": "tokens per day"}
        closed = [names[c] for c, mode in self._modes().items() if mode == "fail_closed"]
        return DependencyUnavailable(
            f"quota store (Redis) unavailable and the {' and '.join(closed)} "
            f"quota {'is' if len(closed) == 1 else 'are'} fail_closed: {what}"
        )

    def _fallback_admit(self, tenant: str, estimated_tokens: int) -> Admission:
        if "fail_closed" in self._modes().values():
            raise self._unavailable("request refused")
        return self._fallback.admit_now(tenant, estimated_tokens)

    # -- API -------------------------------------------------------------------
    async def admit(
        self, tenant: str, estimated_tokens: int, *, peek: Sequence[str] = ()
    ) -> Admission:
        _check_estimate(estimated_tokens)
        if self._degraded:
            return self._fallback_admit(tenant, estimated_tokens)
        rpm_limit, token_limit = self._settings.quota_for(tenant)
        window_key, token_base = self._keys(tenant)
        member = f"{self._member_base}:{next(self._sequence)}"
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._pipeline.evalsha(
                    self._admit_script,
                    keys=[window_key, token_base, *peek],
                    args=[rpm_limit, self._window_us, member, token_limit, estimated_tokens,
                          TOKEN_KEY_LIFETIME_DAYS],
                )
        except _REDIS_FAILURES as exc:
            self._enter_degraded(exc, "admit")
            return self._fallback_admit(tenant, estimated_tokens)
        peeked: list[bytes | None] | None = None
        if peek:
            raw, peeked = raw[0], list(raw[1])
        fields = raw.split()
        check = _Check(
            rpm_ok=fields[0] in (b"1", "1"), tokens_ok=fields[1] in (b"1", "1"),
            count=int(fields[2]), now=int(fields[3]) / 1e6, rpm_reset=int(fields[4]) / 1e6,
            used=int(fields[5]), reserved=int(fields[6]), day=_text(fields[7]),
            day_number=int(fields[8]),
        )
        if len(self._seen) >= 100_000:
            self._seen.clear()
        self._seen[tenant] = Seed(check.day, check.used + check.reserved, check.count,
                                  time.time(), rpm_limit, token_limit)
        admission = _verdict(check, tenant, rpm_limit, token_limit, estimated_tokens,
                             degraded=False, backend="redis")
        admission.peeked = peeked
        return admission

    async def _settle(self, admission: Admission, actual_tokens: int) -> None:
        if actual_tokens < 0:
            raise ValueError("actual_tokens must be >= 0")
        if admission.finished:
            return
        key = self.token_key(admission.tenant, admission.day)
        expire_at = _day_start(admission.day) + TOKEN_KEY_LIFETIME_DAYS * DAY_S
        if admission.backend == "redis":
            admission.finished = True
            entry = (key, admission.reserved_tokens, actual_tokens, expire_at)
        else:
            # Admitted locally while Redis was away: settle here, and record the real
            # usage in Redis too (now or on recovery) so the day's total stays true.
            self._fallback.settle_now(admission, actual_tokens)
            entry = (key, 0, actual_tokens, expire_at)
        if entry[1] == 0 and entry[2] == 0:
            return  # nothing was reserved and nothing used: no round trip
        if not self._degraded:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._pipeline.evalsha(self._settle_script, [key], entry[1:])
                return
            except _REDIS_FAILURES as exc:
                self._enter_degraded(exc, "settle")
        if len(self._pending) >= MAX_PENDING_SETTLEMENTS:
            self._pending.popleft()
            self._dropped_settlements += 1
        self._pending.append(entry)

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        await self._settle(admission, actual_tokens)

    async def release(self, admission: Admission) -> None:
        await self._settle(admission, 0)

    async def usage(self, tenant: str) -> dict[str, Any]:
        if not self._degraded:
            window_key, token_base = self._keys(tenant)
            try:
                async with asyncio.timeout(self._timeout):
                    raw = await self._usage_script(keys=[window_key, token_base],
                                                   args=[self._window_us])
            except _REDIS_FAILURES as exc:
                self._enter_degraded(exc, "usage")
            else:
                rpm_limit, token_limit = self._settings.quota_for(tenant)
                return _usage_view(
                    tenant, rpm_limit, self._window_s, int(raw[0]), int(raw[2]) / 1e6,
                    token_limit, int(raw[3]), int(raw[4]), _text(raw[5]), int(raw[6]),
                    degraded=False,
                )
        if "fail_closed" in self._modes().values():
            raise self._unavailable("usage is unknown")
        return self._fallback.usage_now(tenant)

    async def close(self) -> None:
        """Stop the recovery probe (the Redis client belongs to the caller)."""
        self._closed = True
        task, self._probe_task = self._probe_task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        if self._pending:
            _log().warning("quota_settlements_unsent", key_prefix=self._prefix,
                           count=len(self._pending))


def make_quota(
    settings: Settings,
    redis_client: Redis | None,
    *,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    window_s: float = DEFAULT_WINDOW_S,
    pipeline: AutoPipeline | None = None,
) -> QuotaLimiter:
    """RedisQuota when a Redis client is given (shared mode), else LocalQuota (embedded)."""
    if redis_client is None:
        return LocalQuota(settings, window_s=window_s)
    return RedisQuota(redis_client, settings, key_prefix=key_prefix, window_s=window_s,
                      pipeline=pipeline)
