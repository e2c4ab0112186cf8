"""What each gateway instance last said about itself (its status events): degraded
quota controls and how full its audit spool is. Ingest keeps the last report
consumed per instance; merging two consumers' views keeps the newer one.

An instance is a gateway process (``host:pid``), so every restart or new pod is a
new name: a report older than the longest window, which no query reads, is
forgotten when a new instance reports — the map holds the instances heard from
within the last hour, not every one since the consumer started."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from telemetry.rolling.figures import WINDOWS, Sample

__all__ = ["InstanceStatus", "Instances"]


@dataclass
class InstanceStatus:
    ts: float
    quota_degraded: dict[str, bool]
    spool_bytes: int
    spool_capacity_bytes: int

    def spool_fill(self) -> float:
        return self.spool_bytes / self.spool_capacity_bytes if self.spool_capacity_bytes else 0.0


class Instances(dict[str, InstanceStatus]):
    """Instance name → its newest :class:`InstanceStatus`."""

    def report(self, instance: str, status: InstanceStatus, now: float) -> None:
        """Keep ``status`` as ``instance``'s newest; a new name first drops the reports
        older than the longest window (O(instances) only when one appears)."""
        if instance not in self:
            horizon = now - max(WINDOWS.values())
            for stale in [i for i, s in self.items() if s.ts <= horizon]:
                del self[stale]
        self[instance] = status

    def merge(self, other: Instances) -> None:
        """Another consumer's reports: per instance, the newer one stays."""
        for instance, status in other.items():
            known = self.get(instance)
            if known is None or known.ts < status.ts:
                self[instance] = status

    def query(self, metric: str, window: str, group_by: Sequence[str], now: float
              ) -> list[Sample]:
        """``spool_fill_ratio`` or ``quota_degraded`` of the instances heard from within
        the window: the worst instance, or per ``instance`` (and ``control``)."""
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}")
        fresh = {i: s for i, s in self.items() if s.ts > now - WINDOWS[window]}
        if metric == "spool_fill_ratio":
            ratios = {i: s.spool_fill() for i, s in fresh.items()}
            if "instance" in group_by:
                return [Sample({"instance": i}, r, 1) for i, r in sorted(ratios.items())]
            return [Sample({}, max(ratios.values()) if ratios else None, len(ratios))]
        if metric != "quota_degraded":
            raise ValueError(f"not an instance metric: {metric!r}")
        flags = {(i, c): 1.0 if bad else 0.0 for i, s in fresh.items()
                 for c, bad in s.quota_degraded.items()}
        keep = [d for d in ("instance", "control") if d in group_by]
        if keep:
            grouped: dict[tuple[str, ...], float] = {}
            for (instance, control), flag in flags.items():
                labels = {"instance": instance, "control": control}
                g = tuple(labels[d] for d in keep)
                grouped[g] = max(grouped.get(g, 0.0), flag)
            return [Sample(dict(zip(keep, g, strict=True)), v, 1)
                    for g, v in sorted(grouped.items())]
        return [Sample({}, max(flags.values()) if flags else 0.0, len(flags))]

    def view(self) -> dict[str, dict[str, Any]]:
        """For the dashboard: every instance's report, by name."""
        return {i: {"ts": s.ts, "quota_degraded": s.quota_degraded, "spool_bytes": s.spool_bytes,
                    "spool_capacity_bytes": s.spool_capacity_bytes}
                for i, s in sorted(self.items())}
