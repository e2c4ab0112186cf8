"""Cumulative counters since start: what ``/metrics`` exposes as Prometheus counters.

Unlike the windows these never forget; Prometheus takes rates of them. Keys are
label tuples: requests by ``(tenant, route, status_class)``, latency by
``(tenant, route)``, tokens by ``(tenant, model, kind)``, cost by
``(tenant, model)``, cache lookups and hits by tenant.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BUCKETS", "LatencyHistogram", "Totals"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LatencyHistogram:
    """A Prometheus histogram over :data:`LATENCY_BUCKETS`: per-bucket counts (the last
    one past every bound, ``+Inf``), the sum and the count of what was observed."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        # the first bucket whose upper bound is >= seconds (Prometheus' le is inclusive)
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def merge(self, other: LatencyHistogram) -> None:
        for i, observed in enumerate(other.counts):
            self.counts[i] += observed
        self.sum += other.sum
        self.count += other.count

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)`` per bucket, ``math.inf`` last —
        the exposition's ``le`` buckets."""
        out, running = [], 0
        for bound, observed in zip((*LATENCY_BUCKETS, math.inf), self.counts, strict=True):
            running += observed
            out.append((bound, running))
        return out


def _add(mine: dict[Any, Any], theirs: dict[Any, Any]) -> None:
    for key, value in theirs.items():
        mine[key] = mine.get(key, 0) + value


@dataclass
class Totals:
    """Cumulative counters since start, for Prometheus."""

    requests: dict[tuple[str, str, str], int] = field(default_factory=dict)
    latency: dict[tuple[str, str], LatencyHistogram] = field(default_factory=dict)
    tokens: dict[tuple[str, str, str], int] = field(default_factory=dict)
    cost: dict[tuple[str, str], float] = field(default_factory=dict)
    cache_hits: dict[str, int] = field(default_factory=dict)
    cache_lookups: dict[str, int] = field(default_factory=dict)

    def add_request(self, tenant: str, route: str, klass: str, seconds: float) -> None:
        key = (tenant, route, klass)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get((tenant, route))
        if histogram is None:
            histogram = self.latency[(tenant, route)] = LatencyHistogram()
        histogram.observe(seconds)

    def add_usage(self, tenant: str, model: str, tokens: dict[str, int], cost_usd: float,
                  *, hit: bool) -> None:
        """``tokens``: count per kind (prompt, completion, embedding); zeros are skipped."""
        for kind, count in tokens.items():
            if count:
                key = (tenant, model, kind)
                self.tokens[key] = self.tokens.get(key, 0) + count
        self.cost[(tenant, model)] = self.cost.get((tenant, model), 0.0) + cost_usd
        self.cache_lookups[tenant] = self.cache_lookups.get(tenant, 0) + 1
        if hit:
            self.cache_hits[tenant] = self.cache_hits.get(tenant, 0) + 1

    def merge(self, other: Totals) -> None:
        _add(self.requests, other.requests)
        _add(self.tokens, other.tokens)
        _add(self.cost, other.cost)
        _add(self.cache_hits, other.cache_hits)
        _add(self.cache_lookups, other.cache_lookups)
        for key, histogram in other.latency.items():
            self.latency.setdefault(key, LatencyHistogram()).merge(histogram)
