"""What an audit record holds: the fields PCI DSS 10.2.2 asks for, and nothing raw.

:func:`build_record` turns one Kafka record of the audit topic into the dict
that the store canonicalises and chains (see :mod:`telemetry.audit_chain`):

* who: ``subject``, ``tenant``, ``roles``
* what: ``method``, ``route``, ``action``, ``index``
* when: ``ts`` (the event's RFC 3339 time)
* where: ``client_addr`` under the configured policy (``truncate``: IPv4 /24,
  IPv6 /48; ``hash``: HMAC-SHA-256 with ``RAGWARD_AUDIT_IP_HASH_KEY``; ``drop``;
  :mod:`telemetry.client_address`, which the gateway applies too),
  ``user_agent`` (the gateway redacts it and cuts it to 256 characters; the store
  cuts anything longer to 512)
* outcome: ``status``, ``decision``, ``reason``, ``cached``
* ``latency_us`` (integer microseconds: records hold no floats, so any JSON
  library canonicalises them identically), ``redactions`` (count per PII type),
  ``question_sha256``
* position: ``partition`` and ``offset`` in the audit topic, ``record_version``
* ``chat`` (chat completions only): ``streamed``, ``phase`` (``start`` | ``end``),
  ``outcome`` (``open`` | ``completed`` | ``disconnected`` | ``error``),
  ``finish_reason``, ``ttft_us``, ``duration_us`` and the tokens charged
* ``trace_id`` (traced requests only): the request's OpenTelemetry trace

The redacted question text (``questions_redacted`` in the event) is **not**
stored: a redactor can miss PII, and a hash-chained log cannot be edited later
without breaking its proof; the keyed hash is enough to match a known question
for whoever holds ``RAGWARD_AUDIT_HASH_KEY``, and useless for guessing without it.

Record version 2 holds ``question_hmac``. An event written before it (with the
unkeyed ``question_sha256``) still becomes the version 1 record it always made,
so replaying an old topic yields the same chain as the store it built.
A value that is not an AuditEvent becomes a ``malformed`` record that keeps its
place in the chain with the value's SHA-256, never its bytes.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from telemetry.bus import Record
from telemetry.client_address import ClientAddressPolicy
from telemetry.events import ChatSummary, audit_decoder

RECORD_VERSION = 2
LEGACY_RECORD_VERSION = 1  # question_sha256, before question_hmac
MAX_TEXT = 512
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ERROR_PATH = re.compile(r"at `([^`]{1,100})`")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_ts_us(value: str) -> int | None:
    """Microseconds since the epoch of an RFC 3339 time (naive means UTC), or None."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def format_ts_us(ts_us: int) -> str:
    moment = datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class BuiltRecord:
    """One record ready to chain, with the columns the store indexes."""

    partition: int
    offset: int
    event_id: str
    ts_us: int
    tenant: str
    subject: str
    request_id: str
    record: dict[str, Any]


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


def _hash_list(values: list[str]) -> list[str]:
    # Defence in depth: anything that is not already a SHA-256 is hashed, never kept.
    return [v if _HEX64.fullmatch(v) else hashlib.sha256(v.encode()).hexdigest() for v in values]


def _us(ms: float | None) -> int | None:
    return round(ms * 1000) if ms is not None and math.isfinite(ms) else None


def _chat(chat: ChatSummary) -> dict[str, Any]:
    """A chat completion's outcome; integers only (microseconds), like latency_us."""
    return {
        "streamed": chat.streamed,
        "phase": chat.phase,
        "outcome": chat.outcome,
        "finish_reason": _cut(chat.finish_reason),
        "ttft_us": _us(chat.ttft_ms),
        "duration_us": _us(chat.duration_ms),
        "prompt_tokens": int(chat.prompt_tokens),
        "completion_tokens": int(chat.completion_tokens),
        "total_tokens": int(chat.total_tokens),
    }


def build_record(rec: Record, policy: ClientAddressPolicy) -> BuiltRecord:
    """The stored record for one Kafka record of the audit topic."""
    kafka_ts_us = rec.timestamp_ms * 1000
    try:
        event = audit_decoder.decode(rec.value)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        found = _ERROR_PATH.search(str(exc))
        record: dict[str, Any] = {
            "record_version": LEGACY_RECORD_VERSION,  # this layout is unchanged since 1
            "partition": rec.partition,
            "offset": rec.offset,
            "malformed": True,
            "error": ("invalid value at " + found.group(1)) if found else "not an AuditEvent",
            "value_sha256": hashlib.sha256(rec.value).hexdigest(),
            "ts": format_ts_us(kafka_ts_us),
            "event_id": f"malformed:{rec.partition}:{rec.offset}",
            "request_id": "",
            "tenant": "-",
            "subject": "-",
        }
        return BuiltRecord(
            rec.partition, rec.offset, record["event_id"], kafka_ts_us, "-", "-", "", record
        )
    ts_us = parse_ts_us(event.ts)
    legacy = not isinstance(event.question_sha256, msgspec.UnsetType)
    record = {
        "record_version": LEGACY_RECORD_VERSION if legacy else RECORD_VERSION,
        "partition": rec.partition,
        "offset": rec.offset,
        "event_id": event.event_id,
        "request_id": event.request_id,
        "schema_version": event.schema_version,
        "ts": event.ts if ts_us is not None else format_ts_us(kafka_ts_us),
        "tenant": event.tenant,
        "subject": event.subject,
        "roles": list(event.roles),
        "method": event.method,
        "route": event.route,
        "action": event.action,
        "index": event.index,
        "client_addr": policy.apply(event.client_addr),
        "user_agent": _cut(event.user_agent),
        "status": event.status,
        "decision": event.decision,
        "reason": _cut(event.reason),
        "cached": event.cached,
        "latency_us": round(event.latency_ms * 1000) if math.isfinite(event.latency_ms) else -1,
        "redactions": {str(k): int(v) for k, v in event.redactions.items()},
    }
    if isinstance(event.question_sha256, msgspec.UnsetType):
        record["question_hmac"] = _hash_list(event.question_hmac)
    else:  # legacy
        record["question_sha256"] = _hash_list(event.question_sha256)
    if event.chat is not None:  # only then: older records keep their exact shape and hash
        record["chat"] = _chat(event.chat)
    if event.trace_id is not None:  # likewise: only traced requests have one
        record["trace_id"] = event.trace_id
    if ts_us is None:
        record["ts_invalid"] = True
        ts_us = kafka_ts_us
    return BuiltRecord(
        rec.partition,
        rec.offset,
        event.event_id,
        ts_us,
        event.tenant,
        event.subject,
        event.request_id,
        record,
    )


def record_columns(record: dict[str, Any]) -> tuple[str, int | None, str, str, str]:
    """(event_id, ts_us, tenant, subject, request_id) as derived from a stored record."""
    return (
        str(record.get("event_id")),
        parse_ts_us(str(record.get("ts", ""))),
        str(record.get("tenant")),
        str(record.get("subject")),
        str(record.get("request_id")),
    )
