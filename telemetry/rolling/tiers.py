"""Time buckets in three tiers: each window reads the tier of its resolution.

1-second buckets are kept for the 1 m window, 10-second buckets for 5 m, 1-minute
buckets for 1 h (and the dashboard's hour of history). An event lands in every
tier, in the bucket of its own ``ts``; a bucket older than its tier keeps is
dropped when a newer one opens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from telemetry.rolling.figures import Cell, Key

__all__ = ["Tier", "new_tiers"]


@dataclass
class Tier:
    resolution: float
    span: float
    buckets: dict[int, dict[Key, Cell]] = field(default_factory=dict)
    newest: int = -1
    keep: int = 0

    def __post_init__(self) -> None:
        self.keep = math.ceil(self.span / self.resolution) + 1

    def cell(self, ts: float, key: Key) -> Cell | None:
        index = int(ts // self.resolution)
        bucket = self.buckets.get(index)
        if bucket is None:
            if index <= self.newest - self.keep:
                return None  # older than this tier keeps
            bucket = self.buckets[index] = {}
            if index > self.newest:
                self.newest = index
                floor = index - self.keep
                for old in [i for i in self.buckets if i <= floor]:
                    del self.buckets[old]
        cell = bucket.get(key)
        if cell is None:
            cell = bucket[key] = Cell()
        return cell

    def window(self, now: float, seconds: float) -> tuple[range, float]:
        """Bucket indexes overlapping (now - seconds, now] and the span they cover."""
        last = int(now // self.resolution)
        first = int((now - seconds) // self.resolution) + 1
        if (now - seconds) % self.resolution == 0:
            first -= 1
        first = max(first, last - self.keep + 1)
        span = min(seconds, now - first * self.resolution)
        return range(first, last + 1), max(span, 1e-9)


def new_tiers() -> dict[str, Tier]:
    """One tier per window name of :data:`~telemetry.rolling.figures.WINDOWS`."""
    return {"1m": Tier(1.0, 60.0), "5m": Tier(10.0, 300.0), "1h": Tier(60.0, 3600.0)}
