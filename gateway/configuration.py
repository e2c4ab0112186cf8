"""Settings → each gateway component's own configuration, in one place.

A component takes only what it uses (:class:`~gateway.forward.HttpUpstreamConfig`,
:class:`~gateway.auth.TokenConfig`, ...), so its signature says what it needs and a
test builds it without a 90-field ``Settings``. This module is the only part of the
gateway that reads ``Settings`` for a component; the composition (``open_components``,
``ragward serve``, the CLI) calls it, the components never do.
"""

from __future__ import annotations

from gateway.auth import TokenConfig
from gateway.forward import HttpUpstreamConfig, ResilienceConfig
from gateway.quota import QuotaConfig
from gateway.redis_client import RedisConfig
from ragward.errors import ConfigError
from ragward.settings import Settings, env_name, secret_value


def token_config(settings: Settings) -> TokenConfig:
    """How tokens are verified; a ConfigError when neither a secret nor a JWKS is set."""
    if settings.jwt_secret is None and settings.jwks_url is None:
        raise ConfigError(
            f"set {env_name('jwt_secret')} or {env_name('jwks_url')}: the gateway verifies tokens"
        )
    return TokenConfig(
        secret=secret_value(settings.jwt_secret),
        jwks_url=settings.jwks_url,
        jwks_cache_ttl_s=settings.jwks_cache_ttl_s,
        jwks_min_refresh_interval_s=settings.jwks_min_refresh_interval_s,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
        tenant_claim=settings.jwt_tenant_claim,
        roles_claim=settings.jwt_roles_claim,
        max_token_bytes=settings.jwt_max_token_bytes,
    )


def metrics_token_config(settings: Settings) -> TokenConfig | None:
    """How a consumer checks the scraper's token: None with ``metrics_auth=none``."""
    if settings.metrics_auth != "token":
        return None
    if settings.jwt_secret is None and settings.jwks_url is None:
        raise ConfigError(
            f"{env_name('metrics_auth')}=token needs {env_name('jwt_secret')} or "
            f"{env_name('jwks_url')} to verify the scraper's token"
        )
    return token_config(settings)


def http_upstream_config(settings: Settings) -> HttpUpstreamConfig:
    """The remote rag_core; a ConfigError when ``rag_core_url`` is not set."""
    if not settings.rag_core_url:
        raise ConfigError(f"{env_name('rag_core_url')} is not set")
    return HttpUpstreamConfig(
        url=settings.rag_core_url,
        timeout_s=settings.upstream_timeout_s,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        internal_token=secret_value(settings.internal_token),
    )


def resilience_config(settings: Settings) -> ResilienceConfig:
    return ResilienceConfig(
        max_concurrent=settings.max_concurrent_upstream,
        queue=settings.upstream_queue,
        queue_timeout_s=settings.upstream_queue_timeout_s,
        retries=settings.upstream_retries,
        failure_threshold=settings.circuit_failure_threshold,
        reset_s=settings.circuit_reset_s,
    )


def quota_config(settings: Settings) -> QuotaConfig:
    return QuotaConfig(
        rpm=settings.quota_rpm,
        tokens_per_day=settings.quota_tokens_per_day,
        rpm_mode=settings.quota_rpm_mode,
        tokens_mode=settings.quota_tokens_mode,
        expected_replicas=settings.quota_expected_replicas,
        redis_timeout_s=settings.redis_timeout_s,
        tenants=dict(settings.quotas.tenants),
    )


def redis_config(settings: Settings) -> RedisConfig:
    """The shared Redis; a ConfigError when ``redis_url`` is not set."""
    if not settings.redis_url:
        raise ConfigError(f"{env_name('redis_url')}: not set")
    return RedisConfig(
        url=settings.redis_url,
        ssl_ca_file=settings.redis_ssl_ca_file,
        username=settings.redis_username,
        password=secret_value(settings.redis_password),
    )
