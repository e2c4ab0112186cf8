"""The transport-security settings of Kafka and Redis, checked once at start-up, and the ACL
plan of every component (what it may and may not do on a secured cluster)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from gateway.configuration import redis_config
from gateway.redis_client import RedisConfig, redis_pool
from ragward.devcerts import make_pki
from ragward.errors import ConfigError
from ragward.settings import load_settings
from telemetry.kafka_acls import DEFAULT_GROUPS, Grant, acl_commands, grants
from telemetry.kafka_security import KafkaSecurity

SASL = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "ragward-gateway", "kafka_sasl_password": "s3cret-pw-value"}


def _security(**values: Any) -> KafkaSecurity:
    return KafkaSecurity.from_settings(load_settings(**values))


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki")).ca_file


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    """No security settings: PLAINTEXT, no TLS context, no SASL keywords."""
    assert _security().client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_aiokafka_a_verifying_context_and_the_credentials(ca_file: Path) -> None:
    """SASL_SSL: aiokafka gets the mechanism, user, password and a TLS context that checks
    the certificate chain and the host name."""
    kwargs = _security(**SASL, kafka_ssl_cafile=ca_file).client_kwargs()
    context = kwargs.pop("ssl_context")
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert kwargs == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "ragward-gateway",
                      "sasl_plain_password": "s3cret-pw-value"}


def test_the_password_never_shows_in_the_objects_text(ca_file: Path) -> None:
    """repr of the settings and of the security object hides the SASL password."""
    settings = load_settings(**SASL, kafka_ssl_cafile=ca_file)
    assert "s3cret-pw-value" not in repr(settings)
    assert "s3cret-pw-value" not in repr(KafkaSecurity.from_settings(settings))


@pytest.mark.parametrize("missing", ["kafka_sasl_mechanism", "kafka_sasl_username",
                                     "kafka_sasl_password"])
def test_sasl_without_one_of_its_settings_names_it(missing: str) -> None:
    """SASL_* without mechanism, user or password stops start-up naming the variable."""
    values = {k: v for k, v in SASL.items() if k != missing}
    with pytest.raises(ConfigError, match=rf"^RAGWARD_{missing.upper()}: required with "
                                          "RAGWARD_KAFKA_SECURITY_PROTOCOL=SASL_SSL"):
        _security(**values)


@pytest.mark.parametrize(("protocol", "field"), [
    ("PLAINTEXT", "kafka_sasl_username"), ("SSL", "kafka_sasl_password"),
    ("PLAINTEXT", "kafka_ssl_cafile"), ("SASL_PLAINTEXT", "kafka_ssl_certfile"),
])
def test_a_setting_the_protocol_would_ignore_is_an_error(
    protocol: str, field: str, ca_file: Path
) -> None:
    """Credentials without SASL, or a CA/certificate without TLS, would silently be unused:
    start-up stops naming both (no false sense of security)."""
    values: dict[str, Any] = {"kafka_security_protocol": protocol, field: str(ca_file)}
    if protocol.startswith("SASL_"):
        values |= {k: v for k, v in SASL.items() if k != "kafka_security_protocol"}
    with pytest.raises(ConfigError, match=rf"^RAGWARD_{field.upper()} is set but "
                                          f"RAGWARD_KAFKA_SECURITY_PROTOCOL={protocol}"):
        _security(**values)


def test_missing_or_broken_files_name_their_variable(tmp_path: Path, ca_file: Path) -> None:
    """A CA file that does not exist or is not PEM, a key without its certificate, and a
    client certificate that does not load each stop start-up naming the variable."""
    with pytest.raises(ConfigError, match=r"^RAGWARD_KAFKA_SSL_CAFILE: .* does not exist"):
        _security(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^RAGWARD_KAFKA_SSL_CAFILE: not a PEM CA bundle"):
        _security(kafka_security_protocol="SSL", kafka_ssl_cafile=junk)
    with pytest.raises(ConfigError, match=r"^RAGWARD_KAFKA_SSL_KEYFILE is set without "
                                          "RAGWARD_KAFKA_SSL_CERTFILE"):
        _security(kafka_security_protocol="SSL", kafka_ssl_keyfile=ca_file)
    with pytest.raises(ConfigError, match=r"^RAGWARD_KAFKA_SSL_CERTFILE / "
                                          "RAGWARD_KAFKA_SSL_KEYFILE: .* do not load"):
        _security(kafka_security_protocol="SSL", kafka_ssl_certfile=junk)


def test_mtls_client_certificate_loads(tmp_path: Path) -> None:
    """A client certificate and key (mTLS) load into the context."""
    pki = make_pki(tmp_path)
    security = _security(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca_file,
                         kafka_ssl_certfile=pki.cert_file, kafka_ssl_keyfile=pki.key_file)
    assert security.ssl_context is not None and security.uses_tls and not security.uses_sasl


def test_protocol_and_mechanism_are_case_insensitive_and_checked() -> None:
    """`sasl_ssl` / `scram-sha-256` are accepted; an unknown protocol names the variable."""
    values = {**SASL, "kafka_security_protocol": "sasl_plaintext",
              "kafka_sasl_mechanism": "scram-sha-256"}
    assert _security(**values).client_kwargs()["sasl_mechanism"] == "SCRAM-SHA-256"
    with pytest.raises(ConfigError, match="RAGWARD_KAFKA_SECURITY_PROTOCOL"):
        load_settings(kafka_security_protocol="TLS")


# ---------------------------------------------------------------- ACL plan


def _ops(entries: list[Grant]) -> set[tuple[str, str, str]]:
    return {(g.resource, g.name, g.operation) for g in entries}


def test_gateway_may_only_write_audit_and_usage() -> None:
    """The gateway writes (idempotently) the audit and usage topics and reads nothing."""
    s = load_settings()
    assert _ops(grants(s, "gateway", "gw")) == {
        ("topic", s.topic_audit, "Write"), ("topic", s.topic_usage, "Write"),
        ("cluster", "kafka-cluster", "IdempotentWrite"),
    }


def test_consumers_read_their_topics_and_group_and_never_write_the_audit_topic() -> None:
    """Each consumer reads its topics with its own group, writes only dead letters (and the
    alert consumer its alerts); none may write the audit or usage topic."""
    s = load_settings()
    audit = _ops(grants(s, "audit", "a"))
    assert audit == {("topic", s.topic_audit, "Read"), ("group", "ragward-audit", "Read"),
                     ("topic", s.topic_dead_letter, "Write"),
                     ("cluster", "kafka-cluster", "IdempotentWrite")}
    alerts = _ops(grants(s, "alerts", "al"))
    assert ("topic", s.topic_alerts, "Write") in alerts
    assert ("group", "ragward-metrics", "Read") not in alerts
    for component in ("metrics", "alerts", "audit"):
        written = {n for r, n, op in _ops(grants(s, component, "u")) if op == "Write"}
        assert s.topic_audit not in written and s.topic_usage not in written


def test_default_groups_are_the_consumers_defaults() -> None:
    """The plan's groups are the ones `ragward consumer KIND` joins by default."""
    from alerting.consumer import DEFAULT_GROUP as ALERTS
    from telemetry.audit_consumer import DEFAULT_GROUP as AUDIT
    from telemetry.metrics_consumer import DEFAULT_GROUP as METRICS

    assert dict(DEFAULT_GROUPS) == {"metrics": METRICS, "alerts": ALERTS, "audit": AUDIT}


def test_acl_commands_are_kafka_acls_sh_lines() -> None:
    """The operator's commands: one kafka-acls.sh --add per principal and resource."""
    lines = acl_commands(grants(load_settings(), "gateway", "ragward-gateway"))
    assert ("kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config admin.properties "
            "--add --allow-principal User:ragward-gateway --operation IdempotentWrite "
            "--cluster") in lines
    assert any(line.endswith("--operation Write --topic ragward.audit.v1") for line in lines)
    assert len(lines) == 3


# ---------------------------------------------------------------- Redis


def test_redis_tls_settings_reach_the_pool(ca_file: Path) -> None:
    """rediss:// with a CA file: the pool verifies the certificate and host name, with the
    ACL user from settings (over the URL's)."""
    pool = redis_pool(redis_config(load_settings(
        redis_url="rediss://u:p@127.0.0.1:1/0", redis_ssl_ca_file=ca_file,
        redis_username="ragward-gateway", redis_password="pw")))
    kwargs = pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == str(ca_file) and kwargs["ssl_check_hostname"] is True
    assert kwargs["ssl_cert_reqs"] == "required"
    assert (kwargs["username"], kwargs["password"]) == ("ragward-gateway", "pw")


def test_redis_ca_file_without_tls_or_missing_names_the_variable(tmp_path: Path) -> None:
    """A Redis CA file with a plain redis:// URL, or one that does not exist, is an error."""
    with pytest.raises(ConfigError, match=r"^RAGWARD_REDIS_SSL_CA_FILE is set but"):
        redis_pool(RedisConfig(url="redis://127.0.0.1:1/0", ssl_ca_file=tmp_path / "ca.pem"))
    with pytest.raises(ConfigError, match=r"^RAGWARD_REDIS_SSL_CA_FILE: .* does not exist"):
        redis_pool(RedisConfig(url="rediss://127.0.0.1:1/0", ssl_ca_file=tmp_path / "ca.pem"))


def test_acl_command_line_prints_the_plan_and_refuses_unknown_components(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m telemetry.kafka_acls gateway=USER` prints that user's kafka-acls.sh lines
    (the README's commands); an unknown component gets the usage and exit 2."""
    from telemetry.kafka_acls import main

    assert main(["gateway=ragward-gateway"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# gateway: ragward-gateway" and len(out) == 4
    assert all("--allow-principal User:ragward-gateway" in line for line in out[1:])
    assert main(["proxy=someone"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_a_dropped_tls_connection_is_an_outage_not_a_refusal() -> None:
    """A TLS connection cut mid-handshake (a broker restarting) is retried like an outage;
    a certificate the broker rejects, even under a closed connection, is a refusal."""
    from aiokafka.errors import KafkaConnectionError

    from telemetry.kafka_security import refusal

    security = KafkaSecurity("SSL")
    assert refusal(ssl.SSLEOFError(8, "EOF occurred"), security, "b:9093") is None
    closed = KafkaConnectionError("Connection at b:9093 closed")
    closed.__cause__ = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] bad certificate")
    closed.__cause__.reason = "SSLV3_ALERT_BAD_CERTIFICATE"
    reason = refusal(closed, security, "b:9093")
    assert reason is not None and reason.startswith("RAGWARD_KAFKA_SSL_CERTFILE: ")
    assert refusal(KafkaConnectionError("refused"), security, "b:9093") is None
