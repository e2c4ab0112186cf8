"""What the metrics consumer decodes: the lean event types.

Only the fields the metrics use, and not tracked by the garbage collector: decoding
these is about three times faster than the full event types (which
:class:`~telemetry.rolling.RollingMetrics` also accepts). Unknown fields are
skipped; the same ``type`` tags as :mod:`telemetry.events`.
"""

from __future__ import annotations

import msgspec

__all__ = ["MetricsAudit", "MetricsChat", "MetricsEvent", "MetricsIgnored", "MetricsStatus",
           "MetricsUsage", "metrics_decoder"]


# these is about three times faster than the full event types (which RollingMetrics also
# accepts). Unknown fields are skipped; the same ``type`` tags as telemetry.events.


class MetricsChat(msgspec.Struct, gc=False):
    streamed: bool = False
    phase: str = "end"
    ttft_ms: float | None = None


class MetricsAudit(msgspec.Struct, tag_field="type", tag="audit", gc=False):
    event_id: str
    ts: str
    tenant: str = "-"
    route: str = ""
    status: int = 0
    latency_ms: float = 0.0
    chat: MetricsChat | None = None


class MetricsUsage(msgspec.Struct, tag_field="type", tag="usage", gc=False):
    event_id: str
    ts: str
    tenant: str = "-"
    route: str = ""
    model: str = ""
    status: int = 200
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    cost_usd: float = 0.0


class MetricsStatus(msgspec.Struct, tag_field="type", tag="status"):
    event_id: str
    ts: str
    instance: str = ""
    quota_degraded: dict[str, bool] = msgspec.field(default_factory=dict)
    spool_bytes: int = 0
    spool_capacity_bytes: int = 0


class MetricsIgnored(msgspec.Struct, tag_field="type", tag="alert", gc=False):
    event_id: str
    ts: str


MetricsEvent = MetricsAudit | MetricsUsage | MetricsStatus | MetricsIgnored
metrics_decoder = msgspec.json.Decoder(MetricsEvent)
