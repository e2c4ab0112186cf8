"""Event ids and timestamps: the fast paths give exactly what the standard library would."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

from telemetry.events import new_event_id, rfc3339


def _reference(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def test_rfc3339_is_datetimes_text_for_every_instant_and_rounding_edge() -> None:
    """Per-second caching and the rounding of microseconds (half to even, carried into
    the next second) give datetime's isoformat text, also across second boundaries."""
    rng = random.Random(7)
    instants = [rng.uniform(0, 4e9) for _ in range(50_000)]
    base = 1_796_000_000.0
    instants += [base + i / 8 for i in range(64)]  # walks over second boundaries
    instants += [1.9999995, 1.0000005, base + 0.9999996, base + 0.0000005, 0.5e-6, 1.5e-6,
                 2.5e-6, 0.0, base, base + 0.999999, base + 0.9999994]
    for epoch in instants:
        assert rfc3339(epoch) == _reference(epoch), epoch


def test_event_ids_are_distinct_version_4_uuids_in_hex() -> None:
    """Each id is 32 lower-case hex digits that parse as an RFC 4122 version 4 UUID."""
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids[:2000]:
        parsed = uuid.UUID(event_id)
        assert parsed.hex == event_id and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # every random bit is used: across many ids each hex digit position varies
    assert all(len({i[pos] for i in ids}) > 1 for pos in range(32) if pos != 12)
