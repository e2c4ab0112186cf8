"""The clock alerting reads time from, so tests drive evaluation deterministically.

Everything in :mod:`alerting` takes a :class:`Clock` and never calls ``time.time()``
itself: the engine's ``for`` / ``keep_firing_for`` timers, grouping's
``group_wait`` / ``group_interval`` / ``repeat_interval``, silences' time windows
and the notification log all read ``clock.now()`` (seconds since the epoch, the
same scale as event timestamps). Only network retries sleep in real time.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (tests, replays)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        self._now = when
