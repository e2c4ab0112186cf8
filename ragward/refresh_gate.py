"""When a cache of published keys may fetch them again: single-flight and rate-limited.

A verifier that meets an unknown key id should fetch the key document again — that
is how a rotation reaches it without a restart — but a flood of made-up key ids
must not turn into a flood of fetches. :class:`RefreshGate` runs at most one fetch
at a time, none sooner than ``min_interval_s`` after the last one started, and lets
a caller that waited while another fetched return without fetching again. The
gateway's JWKS cache (:class:`gateway.auth.JwksCache`) and the event verifiers' key
set (:class:`telemetry.event_keys.RefreshingVerifier`) both go through it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RefreshGate:
    """Admits a refresh when none ran since it was asked for and the last one is at least
    ``min_interval_s`` old (see module docstring)."""

    def __init__(self, min_interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self.started_at = float("-inf")  # when the last admitted fetch began

    def age(self) -> float:
        """Seconds since the last admitted fetch began (inf before the first)."""
        return self._clock() - self.started_at

    async def refresh(self, fetch: Callable[[], Awaitable[None]],
                      requested_at: float | None = None) -> bool:
        """Run ``fetch`` if admitted; whether it ran. ``requested_at`` (default: now, on
        the gate's clock) is when the caller found it needed fresh keys."""
        asked = self._clock() if requested_at is None else requested_at
        async with self._lock:
            if self.started_at >= asked:  # another caller fetched while this one waited
                return False
            if self.age() < self._min_interval_s:
                return False
            self.started_at = self._clock()
            await fetch()
            return True
