"""What a window holds and what it answers: cells, their sums, the metric names.

A :class:`Cell` is the figures of one label set in one time bucket; an
:class:`Aggregate` adds up the cells of one group of one window and computes a
metric from them on demand (latency sketches are merged only when a quantile is
asked for). Latency quantiles come from DDSketch with 1 % relative accuracy;
sketches merge exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ddsketch import DDSketch

__all__ = ["DIMENSIONS", "METRICS", "QUANTILES", "RELATIVE_ACCURACY", "REQUEST_METRICS",
           "STATUS_METRICS", "TTFT_QUANTILES", "USAGE_METRICS", "WINDOWS", "Aggregate", "Cell",
           "Key", "MetricsView", "Sample", "merged_sketch", "new_sketch"]

RELATIVE_ACCURACY = 0.01
WINDOWS: dict[str, float] = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}
DIMENSIONS = ("tenant", "route", "model", "status_class")
QUANTILES = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
TTFT_QUANTILES = {"ttft_p50": 0.5, "ttft_p95": 0.95, "ttft_p99": 0.99}
REQUEST_METRICS = {"request_rate", "error_rate", *QUANTILES, *TTFT_QUANTILES}
USAGE_METRICS = {"tokens_avg", "tokens_total", "cost_total", "cache_hit_rate"}
STATUS_METRICS = {"consumer_lag", "events_silence", "quota_degraded", "spool_fill_ratio",
                  "events_rejected"}
METRICS = REQUEST_METRICS | USAGE_METRICS | STATUS_METRICS

Key = tuple[str, str, str, str]  # tenant, route, model, status_class


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float | None
    requests: int


class MetricsView(Protocol):
    def query(
        self, metric: str, window: str, group_by: Sequence[str], now: float | None = None
    ) -> list[Sample]: ...


def new_sketch() -> DDSketch:
    return DDSketch(RELATIVE_ACCURACY)


def merged_sketch(sketches: list[DDSketch]) -> DDSketch:
    """One sketch holding all of ``sketches`` (merging is exact for DDSketch)."""
    merged = new_sketch()
    for sketch in sketches:
        merged.merge(sketch)
    return merged


class Cell:
    """Figures of one label set in one time bucket."""

    __slots__ = ("completion", "cost", "embedding", "errors", "hits", "latency", "latency_sum",
                 "prompt", "requests", "ttft", "usage")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency: DDSketch | None = None
        self.ttft: DDSketch | None = None  # chat completions' time to first token
        self.latency_sum = 0.0
        self.usage = 0
        self.prompt = 0
        self.completion = 0
        self.embedding = 0
        self.cost = 0.0
        self.hits = 0

    def add_counts(self, other: Cell) -> None:
        """Add ``other``'s counters and sums (not its latency sketch)."""
        self.requests += other.requests
        self.errors += other.errors
        self.latency_sum += other.latency_sum
        self.usage += other.usage
        self.prompt += other.prompt
        self.completion += other.completion
        self.embedding += other.embedding
        self.cost += other.cost
        self.hits += other.hits

    def merge(self, other: Cell) -> None:
        self.add_counts(other)
        if other.latency is not None:
            if self.latency is None:
                self.latency = new_sketch()
            self.latency.merge(other.latency)
        if other.ttft is not None:
            if self.ttft is None:
                self.ttft = new_sketch()
            self.ttft.merge(other.ttft)


class Aggregate:
    """Cells added up for one group of one window; figures computed on demand
    (sketches are merged only when a quantile is asked for)."""

    __slots__ = ("_sketches", "_ttft_sketches", "cells", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        self.cells = Cell()
        self._sketches: list[DDSketch] = []
        self._ttft_sketches: list[DDSketch] = []

    def add(self, cell: Cell) -> None:
        self.cells.add_counts(cell)
        if cell.latency is not None:
            self._sketches.append(cell.latency)
        if cell.ttft is not None:
            self._ttft_sketches.append(cell.ttft)

    def ttft_sketch(self) -> DDSketch | None:
        if self._ttft_sketches:
            self.cells.ttft, self._ttft_sketches = merged_sketch(self._ttft_sketches), []
        return self.cells.ttft

    def sketch(self) -> DDSketch | None:
        if self._sketches:
            self.cells.latency, self._sketches = merged_sketch(self._sketches), []
        return self.cells.latency

    def value(self, metric: str) -> float | None:
        c = self.cells
        if metric == "request_rate":
            return c.requests / self.span if self.span > 0 else 0.0
        if metric == "error_rate":
            return c.errors / c.requests if c.requests else None
        if metric in QUANTILES:
            return _quantile(self.sketch(), QUANTILES[metric])
        if metric in TTFT_QUANTILES:
            return _quantile(self.ttft_sketch(), TTFT_QUANTILES[metric])
        if metric == "tokens_total":
            return float(c.prompt + c.completion + c.embedding)
        if metric == "tokens_avg":
            return (c.prompt + c.completion + c.embedding) / c.usage if c.usage else None
        if metric == "cost_total":
            return c.cost
        if metric == "cache_hit_rate":
            return c.hits / c.usage if c.usage else None
        raise ValueError(f"unknown metric {metric!r}")

    def figures(self) -> dict[str, float | int | None]:
        c = self.cells
        out: dict[str, float | int | None] = {"requests": c.requests, "answered": c.usage}
        for metric in ("request_rate", "error_rate", *QUANTILES, "tokens_total", "tokens_avg",
                       "cost_total", "cache_hit_rate"):
            out[metric] = self.value(metric)
        out["prompt_tokens"], out["completion_tokens"] = c.prompt, c.completion
        out["embedding_tokens"] = c.embedding
        return out


def _quantile(sketch: DDSketch | None, q: float) -> float | None:
    if sketch is None or sketch.count == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else float(value)
