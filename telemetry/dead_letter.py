"""The dead-letter topic: where a consumer parks what it will not handle, and why.

Each dead letter is one JSON object, keyed like the original record::

    {"reason": "bad_signature", "detail": "signature does not match under key 'gw-2026-01'",
     "key_id": "gw-2026-01", "group": "ragward-audit",
     "topic": "ragward.audit.v1", "partition": 2, "offset": 4711, "timestamp_ms": 1767225600000,
     "dead_lettered_at": "2026-01-01T00:00:00.000000Z",
     "value": "<the original value, exactly, when it is UTF-8>"}   # else "value_b64"

``reason`` is ``undecodable`` (not an event of a known type) or a signature
rejection (:class:`telemetry.signing.Rejection`: ``unsigned``, ``unknown_key``,
``bad_signature``, ``key_expired``, ``malformed``). The original bytes are kept
exactly (``value`` decodes to them), so an investigator can check the signature
again and see what was forged. A dead letter is published durably before the
batch that held the record is committed; the consumer keeps trying until it is.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog

from telemetry.bus import Publisher, Record
from telemetry.events import now_rfc3339

log = structlog.get_logger(__name__)

_encoder = msgspec.json.Encoder()


def envelope(record: Record, reason: str, detail: str, group: str,
             key_id: str | None = None) -> bytes:
    """The dead letter for ``record`` (module docstring)."""
    letter: dict[str, Any] = {
        "reason": reason, "detail": detail, "key_id": key_id, "group": group,
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp_ms": record.timestamp_ms, "dead_lettered_at": now_rfc3339(),
    }
    try:
        letter["value"] = record.value.decode("utf-8")
    except UnicodeDecodeError:
        letter["value_b64"] = base64.b64encode(record.value).decode()
    return _encoder.encode(letter)


def original_value(letter: bytes) -> bytes:
    """The original record's bytes, back from a dead letter."""
    data = msgspec.json.decode(letter)
    if "value" in data:
        return str(data["value"]).encode("utf-8")
    return base64.b64decode(data["value_b64"])


async def park(
    publisher: Publisher,
    topic: str,
    record: Record,
    letter: bytes,
    *,
    retry_wait: Callable[[float], Awaitable[bool]],
) -> None:
    """Publish ``letter`` durably, retrying until it is; ``retry_wait(seconds)`` waits
    between tries and returns True when the consumer is stopping (then the error is
    raised: the batch must not be committed past a record that was not parked)."""
    key = record.key.decode(errors="replace") if record.key else "-"
    while True:
        try:
            await publisher.publish(topic, key, letter)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("consumer.dead_letter_failed", topic=topic, error=repr(exc))
            if await retry_wait(1.0):
                raise
