"""Settings → each component's own configuration (the packages' ``configuration`` modules).

The mappings are exercised end to end by the integration tests; these pin what a
configuration object must never do (show a secret when printed or logged) and the
one-line errors naming the variable when a component's required setting is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from alerting.configuration import alert_config
from gateway.configuration import (
    http_upstream_config,
    metrics_token_config,
    quota_config,
    redis_config,
    resilience_config,
    token_config,
)
from rag_core.configuration import backend_config, ingest_config, service_config
from ragward.errors import ConfigError
from ragward.settings import Settings, load_settings
from telemetry.configuration import audit_store_config, kafka_config

SECRETS = {
    "jwt_secret": "jwt-secret-marker-0123456789abcdef0123",
    "internal_token": "internal-token-marker",
    "redis_password": "redis-password-marker",
    "openai_api_key": "openai-key-marker",
    "pgvector_dsn": "postgresql://u:pgvector-password-marker@db/x",
    "qdrant_api_key": "qdrant-key-marker",
    "slack_webhook_url": "https://hooks.example/slack-url-marker",
    "alert_webhook_url": "https://hooks.example/webhook-url-marker",
    "alertmanager_url": "https://am:alertmanager-password-marker@am.example",
    "kafka_sasl_password": "kafka-password-marker",
    "audit_dsn": "postgresql://u:audit-password-marker@db/audit",
}


def test_no_configuration_shows_a_secret_when_printed(tmp_path: Path) -> None:
    """Every configuration built from settings that carry secrets keeps them out of its
    repr (what a log line or a traceback would print), while the component still gets
    the value."""
    settings = load_settings(
        data_dir=tmp_path, jwks_url="https://idp.example/jwks", rag_core_url="http://rag:8001",
        redis_url="redis://127.0.0.1:6379/0", kafka_bootstrap="127.0.0.1:9092",
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="ragward-gateway", **SECRETS,
    )
    configs = [
        token_config(settings), http_upstream_config(settings), resilience_config(settings),
        quota_config(settings), redis_config(settings), backend_config(settings),
        ingest_config(settings), service_config(settings), alert_config(settings),
        kafka_config(settings), audit_store_config(settings),
    ]
    printed = "\n".join(repr(config) for config in configs)
    leaked = [name for name, secret in SECRETS.items() if secret in printed]
    assert leaked == []
    assert token_config(settings).secret == SECRETS["jwt_secret"]
    assert redis_config(settings).password == SECRETS["redis_password"]
    assert alert_config(settings).receivers.alertmanager_url == SECRETS["alertmanager_url"]


@pytest.mark.parametrize(("build", "variables"), [
    (token_config, ("RAGWARD_JWT_SECRET", "RAGWARD_JWKS_URL")),
    (http_upstream_config, ("RAGWARD_RAG_CORE_URL",)),
    (redis_config, ("RAGWARD_REDIS_URL",)),
    (kafka_config, ("RAGWARD_KAFKA_BOOTSTRAP",)),
])
def test_a_missing_required_setting_is_one_line_naming_it(
    tmp_path: Path, build: Callable[[Settings], object], variables: tuple[str, ...]
) -> None:
    """A component whose required setting is unset is not built: ConfigError names the
    variable(s) to set."""
    with pytest.raises(ConfigError) as caught:
        build(load_settings(data_dir=tmp_path))
    assert all(name in str(caught.value) for name in variables)


def test_consumers_check_the_scrapers_token_only_when_asked(tmp_path: Path) -> None:
    """``metrics_auth=none``: no token check; ``token`` without a verifier configured is
    a ConfigError naming both ways to configure one; with a secret, the gateway's rules."""
    assert metrics_token_config(load_settings(data_dir=tmp_path)) is None
    with pytest.raises(ConfigError, match="RAGWARD_JWT_SECRET or RAGWARD_JWKS_URL"):
        metrics_token_config(load_settings(data_dir=tmp_path, metrics_auth="token"))
    tokens = metrics_token_config(load_settings(data_dir=tmp_path, metrics_auth="token",
                                                jwt_secret=SECRETS["jwt_secret"]))
    assert tokens is not None and tokens.secret == SECRETS["jwt_secret"]
