"""The events ragward publishes (docs/events.md), as typed msgspec structs.

Each event has ``event_id`` (unique), ``schema_version``, ``ts`` (RFC 3339 UTC)
and ``request_id``. New fields get defaults so older readers and newer writers
stay compatible (msgspec schema evolution). One encoder and one decoder per
type are built once and reused. ``docs/events.md`` holds the JSON Schemas,
generated from these types.

Audit, usage and status events are signed by the gateway that produced them
(:mod:`telemetry.signing`): ``key_id``, ``seal_salt`` and ``signature`` ride on each,
and consumers refuse events whose signature does not verify.

No event carries raw PII or secrets: questions appear only redacted and as
keyed hashes (``question_hmac``: HMAC-SHA256 of the normalised redacted question,
:mod:`gateway.fingerprint`).
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

Decision = Literal["allow", "deny", "rate_limited", "invalid", "error"]

# RFC 4122 version 4: the version nibble and the variant bits over 122 random bits.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_event_id() -> str:
    """A random UUID (version 4) in hex, as ``uuid.uuid4().hex`` gives it, without
    building the UUID object (two to three per request: it showed in the profile)."""
    bits = int.from_bytes(os.urandom(16), "big")
    return f"{bits & _UUID4_CLEAR | _UUID4_SET:032x}"


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def rfc3339(epoch_s: float) -> str:
    """RFC 3339 UTC with microseconds, as every event's ``ts``.

    The same text as ``datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec=
    "microseconds")`` with ``Z`` (microseconds rounded half to even, as datetime
    does; a unit test holds the two together), with the date and time of day
    formatted once per second rather than once per event."""
    global _second
    fraction, whole = math.modf(epoch_s)
    micros, second = round(fraction * 1e6), int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second[1]}.{micros:06d}Z"


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


TraceId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$",
                                      description="W3C trace id (hex) of the request's trace")]
SpanId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{16}$",
                                     description="W3C span id (hex) of the span that "
                                     "published the event; consumers link to it")]


class ChatSummary(msgspec.Struct, kw_only=True):
    """How a chat completion went (``/v1/chat/completions``), on its audit events.

    A streamed answer has two audit events: ``phase="start"`` when the status line
    is about to go out (``outcome="open"``), and ``phase="end"`` once it is over,
    before ``data: [DONE]``; a non-streamed one has one, ``phase="end"``.
    ``outcome`` is ``completed``, ``disconnected`` (the client left; the usage is
    what was produced), or ``error`` (the upstream failed mid-stream).
    """

    streamed: bool
    phase: Literal["start", "end"] = "end"
    outcome: Literal["open", "completed", "disconnected", "error"] = "completed"
    finish_reason: str | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AuditEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="audit"):
    """One per request that reaches the gateway, whatever its outcome."""

    event_id: str
    request_id: str
    ts: str
    schema_version: int = 1
    # who
    tenant: str = "-"
    subject: str = "-"
    roles: list[str] = msgspec.field(default_factory=list)
    # what
    method: str = ""
    route: str = ""
    action: str = ""
    index: str | None = None
    # where
    client_addr: str = ""
    user_agent: str = ""
    # outcome
    status: int = 0
    decision: Decision = "allow"
    reason: str | None = None
    latency_ms: float = 0.0
    cached: bool = False
    # content, never raw
    question_hmac: list[str] = msgspec.field(default_factory=list)
    # Events written before question_hmac carried an unkeyed hash of the raw question
    # here; read only so the audit log replays them as they were stored. Never written.
    question_sha256: list[str] | msgspec.UnsetType = msgspec.UNSET
    questions_redacted: list[str] = msgspec.field(default_factory=list)
    redactions: dict[str, int] = msgspec.field(default_factory=dict)
    chat: ChatSummary | None = None
    # tracing on (docs/tracing.md): the request's trace and the publishing span
    trace_id: TraceId | None = None
    span_id: SpanId | None = None
    # provenance (telemetry.signing): set by the signing gateway, checked by every consumer
    key_id: str | None = None
    seal_salt: str | None = None
    signature: str | None = None


class UsageEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="usage"):
    """One per request answered by rag_core or the cache."""

    event_id: str
    request_id: str
    ts: str
    schema_version: int = 1
    tenant: str = "-"
    subject: str = "-"
    route: str = ""
    index: str | None = None
    model: str = ""
    status: int = 200
    latency_ms: float = 0.0
    cached: bool = False
    questions: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    trace_id: TraceId | None = None
    span_id: SpanId | None = None
    # provenance (telemetry.signing): set by the signing gateway, checked by every consumer
    key_id: str | None = None
    seal_salt: str | None = None
    signature: str | None = None


class AlertEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="alert"):
    """Every alert state change (pending, firing, resolved)."""

    event_id: str
    ts: str
    request_id: str = ""
    schema_version: int = 1
    alertname: str = ""
    state: Literal["inactive", "pending", "firing", "resolved"] = "pending"
    fingerprint: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    value: float | None = None
    starts_at: str | None = None
    ends_at: str | None = None


class StatusEvent(msgspec.Struct, kw_only=True, tag_field="type", tag="status"):
    """A gateway instance's health, published periodically (default every 15 s) on the
    usage topic so the alert consumer sees degraded quota control and spool filling."""

    event_id: str
    ts: str
    request_id: str = ""
    schema_version: int = 1
    instance: str = ""
    quota_degraded: dict[str, bool] = msgspec.field(default_factory=dict)
    spool_bytes: int = 0
    spool_capacity_bytes: int = 0
    circuit_state: str = "closed"
    # provenance (telemetry.signing): set by the signing gateway, checked by every consumer
    key_id: str | None = None
    seal_salt: str | None = None
    signature: str | None = None


Event = AuditEvent | UsageEvent | AlertEvent | StatusEvent


class TraceFields(msgspec.Struct):
    """Only the trace context of an audit or usage event, for a consumer that handles
    the raw records (the audit consumer) and links its span to their producers."""

    trace_id: str | None = None
    span_id: str | None = None


_trace_decoder = msgspec.json.Decoder(TraceFields)


def trace_fields(value: bytes) -> TraceFields | None:
    try:
        return _trace_decoder.decode(value)
    except msgspec.DecodeError:  # not an event: the store keeps it as malformed
        return None

_encoder = msgspec.json.Encoder()
audit_decoder = msgspec.json.Decoder(AuditEvent)
usage_decoder = msgspec.json.Decoder(UsageEvent)
alert_decoder = msgspec.json.Decoder(AlertEvent)
any_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def json_schemas() -> dict[str, object]:
    """JSON Schema per event type, for docs/events.md and consumers outside ragward."""
    return {
        cls.__name__: msgspec.json.schema(cls)
        for cls in (AuditEvent, UsageEvent, AlertEvent, StatusEvent)
    }
