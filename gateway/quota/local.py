"""Quotas in one process: embedded mode, and the fallback of a Redis that is away."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from gateway.quota.admission import (
    DEFAULT_WINDOW_S,
    Admission,
    Backend,
    Check,
    QuotaConfig,
    Seed,
    check_estimate,
    day_of,
    usage_view,
    verdict,
)

__all__ = ["LocalQuota"]


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
        config: QuotaConfig,
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
        self._config = config
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
        rpm, tokens = self._config.limits(tenant)
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
        check_estimate(estimated_tokens)
        rpm_limit, token_limit = self.limits(tenant)
        with self._lock:
            now = self._clock()
            log_ = self._window_of(tenant, now)
            count = len(log_)
            rpm_ok = count < rpm_limit
            day, day_number = day_of(now)
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
            check = Check(rpm_ok, tokens_ok, count, now, rpm_reset, budget[0], budget[1],
                           day, day_number)
        return verdict(check, tenant, rpm_limit, token_limit, estimated_tokens,
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
                if actual_tokens == 0 or admission.day != day_of(self._clock())[0]:
                    return  # its day is gone: nothing left to adjust
                budget = self._budget_of(admission.tenant, admission.day)
            budget[1] = max(0, budget[1] - admission.reserved_tokens)
            budget[0] += actual_tokens

    async def admit(self, tenant: str, estimated_tokens: int) -> Admission:
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
            day, day_number = day_of(now)
            used, reserved = self._budget_of(tenant, day)
        return usage_view(tenant, rpm_limit, self._window, count, rpm_reset, token_limit,
                           used, reserved, day, day_number, degraded=self._degraded)

    async def usage(self, tenant: str) -> dict[str, Any]:
        return self.usage_now(tenant)

    def status(self) -> dict[str, bool]:
        return {"rpm": False, "tokens": False}

    async def close(self) -> None:
        return None
