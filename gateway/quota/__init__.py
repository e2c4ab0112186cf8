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

* :class:`RedisQuota` — state in Redis (one server or a cluster), so every
  gateway replica enforces one combined limit. Each operation is one ``EVALSHA``
  of a Lua script (loaded once, NOSCRIPT falls back to loading it), which reads
  the clock with ``redis.call('TIME')`` so replicas with skewed clocks agree. A
  tenant's keys share one hash slot (:mod:`gateway.keyspace`) and expire by
  themselves (the window log after one window, a day's budget two days after the
  day began).
* :class:`LocalQuota` — the same semantics in process: embedded mode, and the
  fallback :class:`RedisQuota` uses when Redis is down and a control is
  ``fail_open``.

Redis down or slower than ``QuotaConfig.redis_timeout_s``: when either control is
``fail_closed`` the request gets :class:`~ragward.errors.DependencyUnavailable`
(503); when both are ``fail_open`` a :class:`LocalQuota` at limit ÷
``QuotaConfig.expected_replicas`` takes over, starting each tenant from the
counts Redis last reported (so a replica admits its share of what was left).
Either way ``status()`` reports the controls degraded, one warning is logged
per transition, settlements that could not reach Redis — and the real usage of
requests admitted locally — are kept and replayed, and a background probe (at
most once per ``probe_interval_s``; it reloads the scripts) switches back as
soon as Redis answers.
While degraded no request waits on Redis. An admit that timed out may still
have been applied by Redis (if the server was already running it): that
request then counts twice — once locally, once in Redis — erring strict.

The interface knows nothing of the answer cache (as Litestar's rate limiter
knows nothing of its store's other users): the request path issues the quota
check and the cache read side by side, and the shared auto-pipeline sends them
in one round trip.

Modules: :mod:`~gateway.quota.admission` (the protocol, the admission and the
verdict), :mod:`~gateway.quota.local`, :mod:`~gateway.quota.redis_quota`,
:mod:`~gateway.quota.scripts` (the Lua).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.quota.admission import DEFAULT_WINDOW_S, Admission, QuotaConfig, QuotaLimiter, Seed
from gateway.quota.local import LocalQuota
from gateway.quota.redis_quota import DEFAULT_KEY_PREFIX, RedisQuota
from gateway.quota.scripts import LUA_CIVIL_FROM_DAYS

if TYPE_CHECKING:
    from gateway.autopipeline import AutoPipeline
    from gateway.redis_client import RedisClient

__all__ = ["DEFAULT_KEY_PREFIX", "LUA_CIVIL_FROM_DAYS", "Admission", "LocalQuota", "QuotaConfig",
           "QuotaLimiter", "RedisQuota", "Seed", "make_quota"]


def make_quota(
    config: QuotaConfig,
    redis_client: RedisClient | None,
    *,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    window_s: float = DEFAULT_WINDOW_S,
    pipeline: AutoPipeline | None = None,
) -> QuotaLimiter:
    """RedisQuota when a Redis client is given (shared mode), else LocalQuota (embedded)."""
    if redis_client is None:
        return LocalQuota(config, window_s=window_s)
    return RedisQuota(redis_client, config, key_prefix=key_prefix, window_s=window_s,
                      pipeline=pipeline)
