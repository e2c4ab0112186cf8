"""Settings → the event plane's configuration and bus, in one place.

The telemetry components take their own small configuration
(:class:`~telemetry.kafka_bus.KafkaConfig`, ...); this module is the one part of
the layer that reads ``Settings`` for them, called by the composition (``ragward
serve``, the gateway's lifespan, the consumers' entry points).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ragward.errors import ConfigError
from ragward.settings import Settings, env_name
from telemetry.bus import EventBus
from telemetry.consumer import ConsumerConfig
from telemetry.signing import EventVerifier

if TYPE_CHECKING:  # aiokafka and the SQL store load only where they are used
    from telemetry.audit_store import AuditStoreConfig
    from telemetry.kafka_bus import KafkaConfig


def event_topics(settings: Settings) -> tuple[str, ...]:
    """Every topic ragward writes: audit, usage, alerts, dead letters."""
    return (settings.topic_audit, settings.topic_usage, settings.topic_alerts,
            settings.topic_dead_letter)


def kafka_config(settings: Settings, *, spool_dir: Path | None = None) -> KafkaConfig:
    """Kafka as ``RAGWARD_KAFKA_*`` describe it, spooling under ``spool_dir`` (default
    ``data_dir/spool``: one spool per process); a ConfigError when it is not set."""
    from telemetry.kafka_bus import KafkaConfig
    from telemetry.kafka_security import KafkaSecurity

    if not settings.kafka_bootstrap:
        raise ConfigError(f"{env_name('kafka_bootstrap')}: not set")
    return KafkaConfig(
        bootstrap=settings.kafka_bootstrap,
        security=KafkaSecurity.from_settings(settings),
        client_id=settings.kafka_client_id,
        compression=settings.kafka_compression,
        linger_ms=settings.kafka_linger_ms,
        ack_timeout_s=settings.kafka_ack_timeout_s,
        topics=event_topics(settings),
        partitions=settings.kafka_partitions,
        replication_factor=settings.kafka_replication_factor,
        spool_dir=spool_dir or settings.data_dir / "spool",
        spool_max_bytes=settings.spool_max_bytes,
        spool_full_policy=settings.spool_full_policy,
        spool_drain_on_stop_s=settings.spool_drain_on_stop_s,
    )


def make_bus(settings: Settings) -> EventBus:
    """Kafka when ``RAGWARD_KAFKA_BOOTSTRAP`` is set, else the in-process bus.

    Call it once per process and share the result: the in-process bus *is* the
    broker (a second one would not see the first one's events), and the Kafka
    bus owns the spool directory (one owner per process).
    """
    if settings.kafka_bootstrap:
        from telemetry.kafka_bus import KafkaBus

        return KafkaBus(kafka_config(settings))
    from telemetry.memory_bus import MemoryBus

    return MemoryBus(partitions=settings.kafka_partitions)


def _consumer_config(settings: Settings, topics: tuple[str, ...],
                     verifier: EventVerifier | None) -> ConsumerConfig:
    if verifier is None:  # the key set the settings name (telemetry.event_keys)
        from telemetry.event_keys import verifier_from_settings

        verifier = verifier_from_settings(settings)
    return ConsumerConfig(
        topics=topics,
        dead_letter_topic=settings.topic_dead_letter,
        verifier=verifier,
        dedupe_window=settings.dedupe_window,
        protect_metrics=settings.metrics_auth == "token",
    )


def metrics_consumer_config(settings: Settings,
                            verifier: EventVerifier | None = None) -> ConsumerConfig:
    """The metrics consumer's (and the alert consumer's) view: audit and usage events,
    checked with ``verifier`` (default: the key set in settings)."""
    return _consumer_config(settings, (settings.topic_audit, settings.topic_usage), verifier)


def audit_consumer_config(settings: Settings,
                          verifier: EventVerifier | None = None) -> ConsumerConfig:
    """The audit consumer's: the audit topic alone."""
    return _consumer_config(settings, (settings.topic_audit,), verifier)


def default_sqlite_path(settings: Settings) -> Path:
    return settings.data_dir / "audit" / "audit.db"


def audit_store_config(settings: Settings, target: str | None = None) -> AuditStoreConfig:
    """The configured audit store (``RAGWARD_AUDIT_DSN``, else SQLite in the data dir), or
    ``target`` (a SQLite path or a PostgreSQL DSN) with the same policies."""
    from telemetry.audit_store import AuditStoreConfig
    from telemetry.client_address import ClientAddressPolicy

    location = target if target is not None else settings.audit_dsn
    return AuditStoreConfig(
        location=location or str(default_sqlite_path(settings)),
        client_address=ClientAddressPolicy.from_settings(settings),
        checkpoint_every=settings.audit_checkpoint_every,
        retention_days=settings.audit_retention_days,
        sqlite_cache_mib=settings.audit_sqlite_cache_mib,
    )
