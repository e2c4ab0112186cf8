"""ragward on a secured Kafka: a SASL_SSL listener, SCRAM-SHA-512 users per component and
the KRaft StandardAuthorizer with the ACLs of :mod:`telemetry.kafka_acls`
(:mod:`ragward.devsecure`). The pipeline works with least privilege; the broker's
refusals (wrong password, untrusted CA, wrong protocol, missing rights) stop start-up
with one line naming the setting and never the secret."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from alerting.configuration import alert_config
from alerting.consumer import AlertConsumer
from ragward.devcerts import make_pki
from ragward.devsecure import COMPONENT_USERS, SecureKafka
from ragward.settings import Settings
from telemetry.audit_consumer import AuditConsumer
from telemetry.audit_store import AuditQuery, open_store
from telemetry.configuration import (
    audit_consumer_config,
    audit_store_config,
    kafka_config,
    make_bus,
    metrics_consumer_config,
)
from telemetry.consumer import start_with_retry
from telemetry.events import AuditEvent, encode, new_event_id, now_rfc3339
from telemetry.kafka_bus import KafkaBus
from telemetry.kafka_security import KafkaAccessRefused, KafkaSecurity, check_access
from telemetry.metrics_consumer import MetricsConsumer
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.signing_support import TEST_KEY_ID, session_key_env
from tests.upstream_server import UpstreamServer

pytestmark = pytest.mark.kafka
GATEWAY, AUDIT, METRICS, ALERTS = (COMPONENT_USERS[c]
                                    for c in ("gateway", "audit", "metrics", "alerts"))


def _topics(unique: str) -> dict[str, str]:
    return {"topic_audit": f"audit-{unique}", "topic_usage": f"usage-{unique}",
            "topic_alerts": f"alerts-{unique}", "topic_dead_letter": f"dead-{unique}"}


def _groups(unique: str) -> dict[str, str]:
    return {kind: f"{kind}-{unique}" for kind in ("metrics", "alerts", "audit")}


async def _prepared(secure_kafka: SecureKafka, unique: str, tmp_path: Path) -> Settings:
    """This test's topics and every component's ACLs on them; admin's settings."""
    settings = secure_kafka.settings("admin", **_topics(unique), data_dir=tmp_path / "admin")
    await secure_kafka.prepare(settings, _groups(unique))
    return settings


async def _until(check: Callable[[], Awaitable[bool]], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def test_gateway_to_consumers_pipeline_runs_over_sasl_ssl_with_per_component_users(
    tmp_path: Path, upstream: UpstreamServer, secure_kafka: SecureKafka, unique: str
) -> None:
    """A request through the gateway (user ragward-gateway, write-only) reaches the audit
    store through the audit consumer (ragward-audit), signed by the gateway's key, and the
    metrics (ragward-metrics) and alert (ragward-alerts) consumers count its events, each on
    its own SCRAM user over TLS. An event forged with the gateway's own Kafka credentials
    (unsigned) is refused by all three and dead-lettered by each consumer's user."""
    await _prepared(secure_kafka, unique, tmp_path)
    topics, groups = _topics(unique), _groups(unique)
    gateway = gateway_settings(tmp_path / "gw", upstream.url, kafka_ack_timeout_s=20,
                               **secure_kafka.overrides(GATEWAY), **topics)
    audit = secure_kafka.settings(AUDIT, **topics, data_dir=tmp_path / "audit",
                                  jwt_secret=TEST_SECRET)
    metrics = secure_kafka.settings(METRICS, **topics, data_dir=tmp_path / "metrics")
    store = open_store(audit_store_config(audit))
    audit_consumer = AuditConsumer.from_bus(audit_consumer_config(audit), make_bus(audit), store,
                                            group=groups["audit"],
                                            poll_timeout_s=0.2)
    metrics_consumer = MetricsConsumer(metrics_consumer_config(metrics), make_bus(metrics),
                                       group_id=groups["metrics"])
    alerts = secure_kafka.settings(ALERTS, **topics, data_dir=tmp_path / "alerts")
    alert_consumer = AlertConsumer(metrics_consumer_config(alerts), alert_config(alerts),
                                   make_bus(alerts), group_id=groups["alerts"],
                                   from_beginning=True)
    await audit_consumer.start()
    await metrics_consumer.start()
    await alert_consumer.start()
    try:
        async with running_gateway(gateway, bus=make_bus(gateway)) as gw:
            answer = await gw.client.post("/v1/query", json={"question": "hello"},
                                          headers=bearer())
            assert answer.status_code == 200, answer.text
            request_id = answer.json()["request_id"]

        async def stored() -> bool:
            page = await store.query(AuditQuery(request_id=request_id))
            return len(page.records) == 1

        async def counted() -> bool:  # the request's audit and usage events
            return metrics_consumer.loop.handled >= 2 and alert_consumer.loop.handled >= 2

        await _until(stored)
        await _until(counted)
        [record] = [line for line in store.backend.export()
                    if line["record"]["request_id"] == request_id]
        assert record["key_id"] == TEST_KEY_ID

        forger = AIOKafkaProducer(bootstrap_servers=secure_kafka.bootstrap,
                                  **secure_kafka.security(GATEWAY).client_kwargs())
        await forger.start()
        try:
            await forger.send_and_wait(topics["topic_audit"], encode(AuditEvent(
                event_id=new_event_id(), request_id="forged", ts=now_rfc3339(), tenant="acme")),
                key=b"acme")
        finally:
            await forger.stop()

        async def refused() -> bool:
            return (audit_consumer.rejected, metrics_consumer.loop.rejected,
                    alert_consumer.loop.rejected) == (1, 1, 1)

        await _until(refused)
        assert (await store.query(AuditQuery(request_id="forged"))).records == []
    finally:
        await alert_consumer.stop()
        await metrics_consumer.stop()
        await audit_consumer.stop()
        await store.close()


async def test_acls_deny_what_a_component_does_not_need(
    tmp_path: Path, secure_kafka: SecureKafka, unique: str
) -> None:
    """With the audit consumer's credentials, producing to the audit topic fails with an
    authorisation error; with the gateway's, reading it does."""
    settings = await _prepared(secure_kafka, unique, tmp_path)
    audit_kwargs = secure_kafka.security(AUDIT).client_kwargs()
    producer = AIOKafkaProducer(bootstrap_servers=secure_kafka.bootstrap, **audit_kwargs)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(settings.topic_audit, b"forged", key=b"acme")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=secure_kafka.bootstrap, group_id=None,
                                **secure_kafka.security(GATEWAY).client_kwargs())
    await consumer.start()
    try:
        consumer.assign([TopicPartition(settings.topic_audit, 0)])
        consumer.seek(TopicPartition(settings.topic_audit, 0), 0)
        with pytest.raises(TopicAuthorizationFailedError):
            await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()


async def test_plaintext_client_cannot_use_the_tls_listener(
    tmp_path: Path, secure_kafka: SecureKafka
) -> None:
    """A PLAINTEXT client gets no connection to the SASL_SSL listener, and ragward's
    start-up check says the port expects TLS (naming the protocol setting)."""
    producer = AIOKafkaProducer(bootstrap_servers=secure_kafka.bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()
    settings = _settings(tmp_path, kafka_bootstrap=secure_kafka.bootstrap)
    bus = KafkaBus(kafka_config(settings))
    publisher = bus.publisher()
    with pytest.raises(KafkaAccessRefused, match="RAGWARD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        await publisher.start()


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    from ragward.settings import load_settings

    return load_settings(data_dir=tmp_path / "data", jwt_secret=TEST_SECRET, **overrides)


async def test_wrong_password_stops_the_publisher_and_consumers_naming_the_setting(
    tmp_path: Path, secure_kafka: SecureKafka, unique: str
) -> None:
    """A wrong SCRAM password: the gateway's publisher does not fall back to spooling and
    the consumer's start is not retried; both raise one line naming the SASL settings,
    without the password."""
    wrong = "not-the-password-" + unique
    settings = _settings(tmp_path, **secure_kafka.overrides(GATEWAY, password=wrong),
                         **_topics(unique))
    publisher = KafkaBus(kafka_config(settings)).publisher()
    with pytest.raises(KafkaAccessRefused) as refused:
        await publisher.start()
    message = str(refused.value)
    assert "RAGWARD_KAFKA_SASL_PASSWORD" in message and wrong not in message
    assert "\n" not in message

    bus = KafkaBus(kafka_config(settings))
    subscription = bus.subscribe([settings.topic_audit], f"g-{unique}")
    failures: list[Exception] = []
    async with asyncio.timeout(30):  # not retried: the first refusal ends it
        with pytest.raises(KafkaAccessRefused):
            await start_with_retry(subscription.start, failed=failures.append, event="t")
    assert len(failures) == 1


def _ragward(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAGWARD_")}
    return subprocess.run([sys.executable, "-m", "ragward.cli", *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=60,
                          check=False)


def _env(overrides: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    from ragward.settings import env_name

    env = {env_name(k): str(v) for k, v in overrides.items()}
    return {**env, **session_key_env(), "RAGWARD_DATA_DIR": str(tmp_path / "data"),
            "RAGWARD_JWT_SECRET": TEST_SECRET}


def test_wrong_password_or_untrusted_ca_stops_the_command_in_one_line(
    tmp_path: Path, secure_kafka: SecureKafka
) -> None:
    """`ragward consumer metrics` with a wrong password, and with a CA that did not sign the
    broker's certificate, exits 2 at once with one line naming the setting to fix (and
    never the password), instead of retrying in the background."""
    wrong = "wrong-password-0123456789"
    result = _ragward(_env(secure_kafka.overrides(METRICS, password=wrong), tmp_path),
                      "consumer", "metrics", "--port", "0")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ragward: RAGWARD_KAFKA_SASL_USERNAME / "
                                                   "RAGWARD_KAFKA_SASL_PASSWORD: ")
    assert wrong not in result.stderr and METRICS in lines[0]

    other_ca = make_pki(tmp_path / "other-ca").ca_file
    untrusted = {**secure_kafka.overrides(METRICS), "kafka_ssl_cafile": other_ca}
    result = _ragward(_env(untrusted, tmp_path), "consumer", "metrics", "--port", "0")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ragward: RAGWARD_KAFKA_SSL_CAFILE: "), lines
    assert "not trusted" in lines[0]
    assert secure_kafka.passwords[METRICS] not in result.stderr


async def test_untrusted_ca_stops_the_publisher_naming_the_ca_setting(
    tmp_path: Path, secure_kafka: SecureKafka
) -> None:
    """In process too: a CA bundle that did not sign the broker's certificate makes the
    publisher's start fail naming RAGWARD_KAFKA_SSL_CAFILE (no spooling forever)."""
    other_ca = make_pki(tmp_path / "other-ca").ca_file
    settings = _settings(tmp_path, **{**secure_kafka.overrides(GATEWAY),
                                      "kafka_ssl_cafile": other_ca})
    assert KafkaSecurity.from_settings(settings).ssl_context is not None
    with pytest.raises(KafkaAccessRefused, match=r"^RAGWARD_KAFKA_SSL_CAFILE: .*not trusted"):
        await KafkaBus(kafka_config(settings)).publisher().start()


async def test_a_consumer_without_its_acls_stops_at_start_naming_the_user(
    tmp_path: Path, secure_kafka: SecureKafka, unique: str
) -> None:
    """The audit consumer's user joining another group, or reading the usage topic, is
    refused by the authorizer: the subscription's start raises one line naming the user
    setting and what was denied (group, topic) instead of polling errors forever."""
    await _prepared(secure_kafka, unique, tmp_path)
    settings = secure_kafka.settings(AUDIT, **_topics(unique), data_dir=tmp_path / "a")
    bus = KafkaBus(kafka_config(settings))
    for topic, group, denied in ((settings.topic_audit, f"other-{unique}", "group"),
                                 (settings.topic_usage, f"audit-{unique}", "topic")):
        subscription = bus.subscribe([topic], group)
        try:
            with pytest.raises(KafkaAccessRefused, match=rf"^RAGWARD_KAFKA_SASL_USERNAME: .* "
                                                         rf"'{AUDIT}' access to the {denied} "):
                await subscription.start()
        finally:
            await subscription.stop()


async def test_mtls_listener_takes_a_client_certificate_and_names_it_when_missing(
    tmp_path: Path, secure_kafka: SecureKafka, unique: str
) -> None:
    """RAGWARD_KAFKA_SECURITY_PROTOCOL=SSL with a client certificate and key connects to a
    listener that requires one (and can produce as that certificate's principal); without
    them the start-up check fails naming the certificate setting."""
    await _prepared(secure_kafka, unique, tmp_path)
    tls = {"kafka_bootstrap": secure_kafka.mtls_bootstrap, "kafka_security_protocol": "SSL",
           "kafka_ssl_cafile": secure_kafka.pki.ca_file, **_topics(unique)}
    with_cert = _settings(tmp_path, **tls, kafka_ssl_certfile=secure_kafka.pki.cert_file,
                          kafka_ssl_keyfile=secure_kafka.pki.key_file)
    await check_access(with_cert)
    producer = AIOKafkaProducer(bootstrap_servers=secure_kafka.mtls_bootstrap,
                                **KafkaSecurity.from_settings(with_cert).client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(with_cert.topic_dead_letter, b"x", key=b"k")
    finally:
        await producer.stop()
    with pytest.raises(KafkaAccessRefused, match=r"^RAGWARD_KAFKA_SSL_CERTFILE: "):
        await check_access(_settings(tmp_path, **tls))


async def test_prepare_returns_only_once_every_acl_is_in_force(
    tmp_path: Path, secure_kafka: SecureKafka, unique: str
) -> None:
    """ACLs the controller committed reach the broker's authorizer a moment later; prepare
    (create_acls) returns only when the broker lists every planned grant, so a client
    started right after is never denied for a grant on its way. Waiting for a grant that
    was never made times out naming it."""
    from aiokafka.admin import AIOKafkaAdminClient

    from telemetry.kafka_acls import Grant, described, grants, wait_until_effective

    settings = await _prepared(secure_kafka, unique, tmp_path)
    admin = AIOKafkaAdminClient(bootstrap_servers=secure_kafka.bootstrap,
                                **secure_kafka.security("admin").client_kwargs())
    await admin.start()
    try:
        planned = {grant for component, user in COMPONENT_USERS.items()
                   for grant in grants(settings, component, user, _groups(unique))}
        for broker in admin._client.cluster.brokers():
            assert planned <= await described(admin, broker.nodeId)
        ghost = Grant("User:nobody", "topic", f"never-{unique}", "Read")
        with pytest.raises(TimeoutError, match=f"never-{unique}"):
            await wait_until_effective(admin, [ghost], timeout_s=0.5)
    finally:
        await admin.close()
