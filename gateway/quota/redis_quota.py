"""Quotas shared by every gateway replica through Redis (one server or a cluster).

Each operation is one ``EVALSHA`` of a script in :mod:`gateway.quota.scripts`, sent
through the gateway's :class:`~gateway.autopipeline.AutoPipeline`, so checks and
settlements of concurrent requests — and the cache reads issued in the same turn —
share round trips. The fail-open / fail-closed behaviour while Redis is away is
described in :mod:`gateway.quota`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import deque
from contextlib import suppress
from typing import Any

import structlog

from gateway.autopipeline import AutoPipeline
from gateway.keyspace import check_prefix, tenant_scope
from gateway.quota.admission import (
    DAY_S,
    DEFAULT_WINDOW_S,
    Admission,
    Check,
    QuotaConfig,
    Seed,
    check_estimate,
    day_start,
    usage_view,
    verdict,
)
from gateway.quota.local import LocalQuota
from gateway.quota.scripts import LUA_ADMIT, LUA_SETTLE, LUA_USAGE
from gateway.redis_client import REDIS_FAILURES, RedisClient
from ragward.errors import DependencyUnavailable

__all__ = ["DEFAULT_KEY_PREFIX", "RedisQuota"]


def _log() -> Any:
    # Looked up per use (only on state transitions): a logger cached at import would
    # escape structlog's test capture and any configuration done after import.
    return structlog.get_logger(__name__)


DEFAULT_KEY_PREFIX = "ragward:quota:"
#: a day's budget key lives until the end of the following UTC day
TOKEN_KEY_LIFETIME_DAYS = 2
#: settlements kept while Redis is unreachable, replayed when it answers again
MAX_PENDING_SETTLEMENTS = 100_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisQuota:
    """Quotas shared by every replica through Redis; see the module docstring.

    ``redis`` is a ``redis.asyncio`` client owned by the caller (the gateway's
    lifespan creates and closes it). ``window_s`` is the sliding window's length:
    60 s in production; tests shorten it to cross window boundaries quickly —
    the clock is always Redis' ``TIME``.
    """

    def __init__(
        self,
        redis: RedisClient,
        config: QuotaConfig,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        window_s: float = DEFAULT_WINDOW_S,
        probe_interval_s: float = 1.0,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._redis = redis
        # Checks and settlements of concurrent requests share round trips; the pipeline
        # bounds each reply's wait (a pipeline handed in, with its own timeout_s).
        self._pipeline = pipeline or AutoPipeline(redis, timeout_s=config.redis_timeout_s)
        self._config = config
        self._prefix = check_prefix(key_prefix)
        self._window_s = window_s
        self._window_us = round(window_s * 1_000_000)
        self._timeout = config.redis_timeout_s
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
        return LocalQuota(self._config, window_s=self._window_s,
                          divisor=self._config.expected_replicas, degraded=True,
                          seed=self._seen.get)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD the Lua scripts (on a cluster: on every primary).

        Optional at start-up (otherwise the first call loads them on NOSCRIPT);
        the recovery probe calls it so a restarted, empty Redis is ready before
        traffic returns to it. Concurrent plain commands, not a pipeline: a cluster
        pipeline sends each command to one node only.
        """
        scripts = (self._admit_script, self._settle_script, self._usage_script)
        async with asyncio.timeout(self._timeout):
            await asyncio.gather(*(self._redis.script_load(s.script) for s in scripts))

    # -- keys ------------------------------------------------------------------
    def _keys(self, tenant: str) -> tuple[str, str]:
        # The tenant is a hash tag: both keys (and every day's budget) share a slot.
        base = tenant_scope(self._prefix, tenant)
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

    def _enter_degraded(self, exc: BaseException, during: str) -> None:
        if not self._degraded:
            self._degraded = True
            self._degraded_since = time.monotonic()
            self._fallback = self._new_fallback()  # starts from what Redis said last
            modes = self._config.modes()
            _log().warning(
                "quota_store_unavailable",
                key_prefix=self._prefix,
                during=during,
                error=type(exc).__name__,
                detail=str(exc)[:200],
                rpm_mode=modes["rpm"],
                tokens_mode=modes["tokens"],
                fallback_divisor=self._config.expected_replicas,
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
                except REDIS_FAILURES:
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
        closed = [names[c] for c, mode in self._config.modes().items() if mode == "fail_closed"]
        return DependencyUnavailable(
            f"quota store (Redis) unavailable and the {' and '.join(closed)} "
            f"quota {'is' if len(closed) == 1 else 'are'} fail_closed: {what}"
        )

    def _fallback_admit(self, tenant: str, estimated_tokens: int) -> Admission:
        if "fail_closed" in self._config.modes().values():
            raise self._unavailable("request refused")
        return self._fallback.admit_now(tenant, estimated_tokens)

    # -- API -------------------------------------------------------------------
    async def admit(self, tenant: str, estimated_tokens: int) -> Admission:
        check_estimate(estimated_tokens)
        if self._degraded:
            return self._fallback_admit(tenant, estimated_tokens)
        rpm_limit, token_limit = self._config.limits(tenant)
        window_key, token_base = self._keys(tenant)
        member = f"{self._member_base}:{next(self._sequence)}"
        try:
            raw = await self._pipeline.evalsha(
                self._admit_script,
                keys=[window_key, token_base],
                args=[rpm_limit, self._window_us, member, token_limit, estimated_tokens,
                      TOKEN_KEY_LIFETIME_DAYS],
            )
        except REDIS_FAILURES as exc:
            self._enter_degraded(exc, "admit")
            return self._fallback_admit(tenant, estimated_tokens)
        fields = raw.split()
        check = Check(
            rpm_ok=fields[0] in (b"1", "1"), tokens_ok=fields[1] in (b"1", "1"),
            count=int(fields[2]), now=int(fields[3]) / 1e6, rpm_reset=int(fields[4]) / 1e6,
            used=int(fields[5]), reserved=int(fields[6]), day=_text(fields[7]),
            day_number=int(fields[8]),
        )
        if len(self._seen) >= 100_000:
            self._seen.clear()
        self._seen[tenant] = Seed(check.day, check.used + check.reserved, check.count,
                                  time.time(), rpm_limit, token_limit)
        return verdict(check, tenant, rpm_limit, token_limit, estimated_tokens,
                       degraded=False, backend="redis")

    async def _settle(self, admission: Admission, actual_tokens: int) -> None:
        if actual_tokens < 0:
            raise ValueError("actual_tokens must be >= 0")
        if admission.finished:
            return
        key = self.token_key(admission.tenant, admission.day)
        expire_at = day_start(admission.day) + TOKEN_KEY_LIFETIME_DAYS * DAY_S
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
                await self._pipeline.evalsha(self._settle_script, [key], entry[1:])
                return
            except REDIS_FAILURES as exc:
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
            except REDIS_FAILURES as exc:
                self._enter_degraded(exc, "usage")
            else:
                rpm_limit, token_limit = self._config.limits(tenant)
                return usage_view(
                    tenant, rpm_limit, self._window_s, int(raw[0]), int(raw[2]) / 1e6,
                    token_limit, int(raw[3]), int(raw[4]), _text(raw[5]), int(raw[6]),
                    degraded=False,
                )
        if "fail_closed" in self._config.modes().values():
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
