"""Pick the event bus transport from settings."""

from __future__ import annotations

from ragward.settings import Settings
from telemetry.bus import EventBus


def make_bus(settings: Settings) -> EventBus:
    """Kafka when ``RAGWARD_KAFKA_BOOTSTRAP`` is set, else the in-process bus.

    Call it once per process and share the result: the in-process bus *is* the
    broker (a second one would not see the first one's events), and the Kafka
    bus owns the spool directory (one owner per process).
    """
    if settings.kafka_bootstrap:
        from telemetry.kafka_bus import KafkaBus

        return KafkaBus(settings)
    from telemetry.memory_bus import MemoryBus

    return MemoryBus(partitions=settings.kafka_partitions)
