"""How every ragward Kafka client reaches the broker: TLS, SASL, and what a refusal means.

:class:`KafkaSecurity` is the one small configuration object every producer,
consumer and admin client is built with (the event bus, ``audit replay``,
devservices): :meth:`KafkaSecurity.from_settings` checks the combination once
and builds the TLS context — host names verified, always (aiokafka's
``create_ssl_context``) — and :meth:`KafkaSecurity.client_kwargs` gives aiokafka's
keyword arguments.

A broker that *refuses* us is a configuration problem, not an outage: retrying
cannot fix a wrong password, an untrusted certificate or a missing ACL.
:func:`start_client` starts an aiokafka client and turns such a refusal into
:class:`KafkaAccessRefused` (a :class:`~ragward.errors.ConfigError`) whose one
line names the setting to fix and never the secret; a broker that is merely
unreachable raises what aiokafka raised, so callers keep retrying. aiokafka's
bootstrap logs the real cause and raises a bare "unable to bootstrap", so
:func:`diagnose` opens one connection itself to learn it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

from ragward.errors import ConfigError
from ragward.settings import KafkaSaslMechanism, KafkaSecurityProtocol, Settings, env_name

_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_FIELDS = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
_TLS_FILES = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
_TLS_CUT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
_DENIED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError,
           ClusterAuthorizationFailedError)


class KafkaAccessRefused(ConfigError):
    """The broker refused this client's credentials, certificate or rights."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Transport security of one process's Kafka clients (see module docstring)."""

    protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: KafkaSaslMechanism | None = None
    username: str | None = None
    password: SecretStr | None = None  # unwrapped only in client_kwargs
    ssl_context: ssl.SSLContext | None = None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in _TLS_PROTOCOLS

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """Validate the ``RAGWARD_KAFKA_*`` security settings; ConfigError names the variable.

        A setting the protocol would ignore is an error too: credentials without SASL or
        a CA without TLS would be silently unused (a false sense of security)."""
        s = settings
        plain = cls(s.kafka_security_protocol, s.kafka_sasl_mechanism, s.kafka_sasl_username,
                    s.kafka_sasl_password)
        proto = f"{env_name('kafka_security_protocol')}={plain.protocol}"
        for field in _SASL_FIELDS:
            given = getattr(s, field) is not None
            if plain.uses_sasl and not given:
                raise ConfigError(f"{env_name(field)}: required with {proto}")
            if given and not plain.uses_sasl:
                raise ConfigError(f"{env_name(field)} is set but {proto} does not use SASL")
        if not plain.uses_tls:
            for field in (*_TLS_FILES, "kafka_ssl_key_password"):
                if getattr(s, field) is not None:
                    raise ConfigError(f"{env_name(field)} is set but {proto} does not use TLS")
            return plain
        for field in _TLS_FILES:
            path = getattr(s, field)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{env_name(field)}: {path} does not exist")
        if s.kafka_ssl_keyfile is not None and s.kafka_ssl_certfile is None:
            raise ConfigError(f"{env_name('kafka_ssl_keyfile')} is set without "
                              f"{env_name('kafka_ssl_certfile')}")
        return replace(plain, ssl_context=_ssl_context(s))

    def client_kwargs(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for this security (producer, consumer, admin)."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            assert self.password is not None  # from_settings requires it
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password.get_secret_value()
        return kwargs


def _ssl_context(s: Settings) -> ssl.SSLContext:
    password = s.kafka_ssl_key_password.get_secret_value() if s.kafka_ssl_key_password else None
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=s.kafka_ssl_cafile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{env_name('kafka_ssl_cafile')}: not a PEM CA bundle "
                          f"({_reason(exc)})") from None
    if s.kafka_ssl_certfile is not None:
        try:
            context.load_cert_chain(s.kafka_ssl_certfile, s.kafka_ssl_keyfile, password)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{env_name('kafka_ssl_certfile')} / {env_name('kafka_ssl_keyfile')}: the client "
                f"certificate and key do not load ({_reason(exc)})"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return type(exc).__name__


# ------------------------------------------------------------------ refusals


def refusal(exc: BaseException, security: KafkaSecurity, address: str) -> str | None:
    """The one-line reason when ``exc`` (or the TLS error under it: a missing client
    certificate shows after the handshake, as a closed connection) says the broker refused
    us, naming the setting to fix (never the secret); None for an outage worth retrying."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        exc = cause
    if isinstance(exc, _TLS_CUT):
        return None  # the connection dropped mid-handshake: an outage, not a refusal
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"{env_name('kafka_ssl_cafile')}: the certificate of the broker at {address} "
                f"is not trusted ({_reason(exc)})")
    if isinstance(exc, ssl.SSLError):
        reason = _reason(exc)
        if any(alert in reason.upper() for alert in ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE")):
            return (f"{env_name('kafka_ssl_certfile')}: the broker at {address} requires a "
                    f"client certificate it trusts ({reason})")
        return (f"{env_name('kafka_security_protocol')}={security.protocol}: the TLS handshake "
                f"with the broker at {address} failed ({reason})")
    if isinstance(exc, SaslAuthenticationFailed | AuthenticationFailedError):
        return (f"{env_name('kafka_sasl_username')} / {env_name('kafka_sasl_password')}: the "
                f"broker at {address} refused {security.sasl_mechanism} authentication as "
                f"{security.username!r} (wrong user name or password)")
    if isinstance(exc, UnsupportedSaslMechanismError):
        return (f"{env_name('kafka_sasl_mechanism')}={security.sasl_mechanism}: the broker at "
                f"{address} does not enable this mechanism")
    if isinstance(exc, _DENIED):
        what = type(exc).__name__.removesuffix("Error").replace("AuthorizationFailed", "")
        return (f"{env_name('kafka_sasl_username')}: the broker at {address} denies "
                f"{security.username or 'this client'!r} access to the {what.lower()} "
                f"({exc}); grant its ACLs (README: Security)")
    return None


async def diagnose(
    bootstrap: str, security: KafkaSecurity, timeout_s: float = 5.0
) -> str | None:
    """Connect (TLS + SASL) to the first bootstrap address that answers; the refusal's one
    line, or None when every address is reachable and accepts us, or none answers."""
    for address in (part.strip() for part in bootstrap.split(",") if part.strip()):
        host, _, port = address.rpartition(":")
        kwargs = security.client_kwargs()
        try:
            conn = await asyncio.wait_for(
                create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000),
                            **kwargs),
                timeout_s,
            )
        except Exception as exc:
            reason = refusal(exc, security, address)
            if reason is None and not security.uses_tls and isinstance(exc, KafkaConnectionError) \
                    and await _speaks_tls(host.strip("[]"), int(port), timeout_s):
                reason = (f"{env_name('kafka_security_protocol')}={security.protocol}: the "
                          f"broker at {address} expects TLS on this port")
            if reason is not None:
                return reason
            continue  # unreachable: try the next address
        conn.close()
        return None
    return None


async def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    """Whether a TLS handshake with host:port completes (nothing is sent after it): tells
    a plaintext client at a TLS listener from a broker that is down."""
    probe = ssl.create_default_context()
    probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE  # only "is it TLS?"
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port, ssl=probe)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start_client(client: _Startable, security: KafkaSecurity, bootstrap: str) -> None:
    """``await client.start()``; a refusal raises :class:`KafkaAccessRefused` (see module
    docstring), anything else propagates unchanged."""
    try:
        await client.start()
    except KafkaConnectionError:
        reason = None
        with contextlib.suppress(Exception):
            reason = await diagnose(bootstrap, security)
        if reason is not None:
            raise KafkaAccessRefused(reason) from None
        raise
    except Exception as exc:
        reason = refusal(exc, security, bootstrap)
        if reason is not None:
            raise KafkaAccessRefused(reason) from None
        raise


async def check_access(settings: Settings) -> None:
    """Start-up check of a process's Kafka settings: raise ConfigError (one line) when they
    are inconsistent or the broker refuses them; an unreachable broker passes (the clients
    retry, and the gateway spools meanwhile)."""
    if not settings.kafka_bootstrap:
        return
    security = KafkaSecurity.from_settings(settings)
    reason = await diagnose(settings.kafka_bootstrap, security)
    if reason is not None:
        raise KafkaAccessRefused(reason)
