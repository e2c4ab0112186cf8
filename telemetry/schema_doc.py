"""Generate the field tables and JSON Schemas of ``docs/events.md`` from the event types.

``python -m telemetry.schema_doc`` rewrites the part of docs/events.md between
the ``BEGIN GENERATED`` / ``END GENERATED`` markers; ``--check`` exits 1 when
the file is out of date. A unit test runs the check, so the document cannot
drift from :func:`telemetry.events.json_schemas`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from telemetry.events import json_schemas

DOC = Path(__file__).resolve().parents[1] / "docs" / "events.md"
BEGIN = "<!-- BEGIN GENERATED: python -m telemetry.schema_doc -->"
END = "<!-- END GENERATED -->"

COMMON = {
    "type": "Event type tag: `audit`, `usage`, `alert` or `status`.",
    "event_id": "Unique id (UUID4 hex); consumers drop repeats by it.",
    "request_id": "The request's `X-Request-ID` (empty for status and some alert events).",
    "ts": "When it happened, RFC 3339 UTC with microseconds (`2025-01-31T12:00:00.123456Z`).",
    "schema_version": "Version of this event type's schema (see Versioning).",
    "key_id": "Id of the gateway key that signed the event (in the verifiers' key set); "
              "signed itself. See Signatures.",
    "seal_salt": "16 random bytes (base64url) salting the seals of `client_addr` and "
                 "`questions_redacted` in the signed view. See Signatures.",
    "signature": "Ed25519 signature (base64url) over the canonical signed view. "
                 "See Signatures.",
}

_TRACE = {  # audit and usage events
    "trace_id": "Tracing on and sampled only: the request's OpenTelemetry trace id (32 hex); "
                "the audit record keeps it (docs/tracing.md).",
    "span_id": "Tracing on and sampled only: id of the gateway span that published the event "
               "(16 hex); consumers link their spans to it.",
}

FIELDS: dict[str, dict[str, str]] = {
    "AuditEvent": {
        "tenant": "Tenant from the token (`-` when unauthenticated).",
        "subject": "`sub` claim of the caller (`-` when unauthenticated).",
        "roles": "Roles from the token.",
        "method": "HTTP method.",
        "route": "Route template (`/v1/query`), never the raw path.",
        "action": "What was attempted (`query`, `query.batch`, `audit.read`, ...): the "
                  "action of the route the request reached, also when it was refused before "
                  "its handler ran (401, 400, 413); `\"\"` where no route serves the path.",
        "index": "Index the request named, when any, also when it was refused for it or "
                 "for its question (403, 404, 422).",
        "client_addr": "Client address as `RAGWARD_AUDIT_CLIENT_IP` keeps it (the gateway "
                       "applies the policy, the audit store again).",
        "user_agent": "User-Agent header, PII redacted, cut to 256 characters.",
        "status": "HTTP status answered.",
        "decision": "`allow`, `deny`, `rate_limited`, `invalid` or `error`.",
        "reason": "Machine-readable reason for a non-allow decision.",
        "latency_ms": "Time in the gateway, milliseconds.",
        "cached": "Answered from the cache.",
        "question_hmac": "HMAC-SHA256 (key `RAGWARD_AUDIT_HASH_KEY`) of each question, "
                         "redacted and normalised (NFKC, casefolded, single spaces); never "
                         "the raw text, and not confirmable without the key.",
        "question_sha256": "Legacy, never written: events before `question_hmac` carried an "
                           "unkeyed SHA-256 of the raw question here.",
        "questions_redacted": "Each question with PII replaced by typed placeholders.",
        "redactions": "PII entity type -> number of replacements.",
        "chat": "Chat completions only (`ChatSummary`): `streamed`, `phase` (`start` before "
                "the status line of a stream, `end` when it is over), `outcome` (`open`, "
                "`completed`, `disconnected`, `error`), `finish_reason`, `ttft_ms`, "
                "`duration_ms` and the tokens charged.",
        **_TRACE,
    },
    "UsageEvent": {
        "tenant": "Tenant billed.",
        "subject": "Caller.",
        "route": "Route template.",
        "index": "Index queried.",
        "model": "LLM that answered (`local` offline).",
        "status": "HTTP status answered.",
        "latency_ms": "Time in the gateway, milliseconds.",
        "cached": "Served from the cache (no tokens spent upstream).",
        "questions": "Questions answered (1, or the batch size).",
        "prompt_tokens": "Prompt tokens.",
        "completion_tokens": "Completion tokens.",
        "embedding_tokens": "Embedding tokens.",
        "total_tokens": "Sum of the three.",
        "cost_usd": "Cost in US dollars from the pricing table.",
        **_TRACE,
    },
    "AlertEvent": {
        "alertname": "Rule name.",
        "state": "`inactive`, `pending`, `firing` or `resolved`.",
        "fingerprint": "Stable hash of the alert's labels.",
        "labels": "Alert labels (rule labels plus the group's labels).",
        "annotations": "Rendered annotations (summary, description).",
        "value": "Metric value that triggered the change.",
        "starts_at": "When it started firing (RFC 3339).",
        "ends_at": "When it resolved (RFC 3339).",
    },
    "StatusEvent": {
        "instance": "Gateway instance (host:port or pod name).",
        "quota_degraded": "Quota control (`rpm`, `tokens`) -> degraded (Redis unreachable).",
        "spool_bytes": "Bytes waiting in the instance's event spool.",
        "spool_capacity_bytes": "The spool's capacity (`RAGWARD_SPOOL_MAX_BYTES`).",
        "circuit_state": "Upstream circuit breaker: `closed`, `half-open` or `open`.",
    },
}


def _type_of(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " \\| ".join(_type_of(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_type_of(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        return f"object of {_type_of(extra)}" if isinstance(extra, dict) else "object"
    return str(kind)


def render() -> str:
    """The generated part of docs/events.md."""
    parts = [BEGIN, ""]
    for name, schema in json_schemas().items():
        body = schema["$defs"][name]  # type: ignore[index]
        required = set(body.get("required", []))
        parts += [f"### {name}", "", body.get("description", ""), "",
                  "| field | type | default | meaning |", "|---|---|---|---|"]
        for field, prop in body["properties"].items():
            default = "required" if field in required else (
                "—" if "default" not in prop else f"`{json.dumps(prop['default'])}`"
            )
            meaning = FIELDS.get(name, {}).get(field) or COMMON.get(field, "")
            parts.append(f"| `{field}` | {_type_of(prop)} | {default} | {meaning} |")
        parts += ["", f"JSON Schema of `{name}`:", "", "```json",
                  json.dumps(schema, indent=2, sort_keys=True), "```", ""]
    parts.append(END)
    return "\n".join(parts)


def undocumented_fields() -> list[str]:
    """Fields that have no meaning written for them (a new field needs one)."""
    missing = []
    for name, schema in json_schemas().items():
        for field in schema["$defs"][name]["properties"]:  # type: ignore[index]
            if field not in COMMON and field not in FIELDS.get(name, {}):
                missing.append(f"{name}.{field}")
    return missing


def updated(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = DOC.read_text(encoding="utf-8")
    new = updated(text)
    if "--check" in args:
        if new != text:
            print(f"{DOC} is out of date: run python -m telemetry.schema_doc", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
