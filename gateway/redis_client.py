"""The gateway's Redis connection: TLS and an ACL user from settings, refusals made loud.

``rediss://`` URLs connect over TLS with the server's certificate verified against
``RAGWARD_REDIS_SSL_CA_FILE`` (else the system's CAs) and its host name checked.
The user is ``RAGWARD_REDIS_USERNAME`` / ``RAGWARD_REDIS_PASSWORD`` when set, else
the URL's ``user:password@``; production runs an ACL user with rights on
ragward's keys only, and the default user off.

:func:`check_redis_access` is the start-up check: a Redis that *refuses* us (wrong
password, unknown user, missing ACL rights, an untrusted certificate) is a
configuration error — one line naming the setting, never the secret — while a
Redis that is down is not (each control then follows its configured mode).
"""

from __future__ import annotations

import ssl
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from ragward.errors import ConfigError
from ragward.settings import Settings, env_name


def redis_pool(settings: Settings, **options: Any) -> aioredis.ConnectionPool:
    """A connection pool for ``RAGWARD_REDIS_URL`` with its TLS and user settings."""
    url = settings.redis_url
    if not url:
        raise ConfigError(f"{env_name('redis_url')}: not set")
    ca_file = settings.redis_ssl_ca_file
    if url.startswith("rediss://"):
        options |= {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if ca_file is not None:
            if not ca_file.is_file():
                raise ConfigError(f"{env_name('redis_ssl_ca_file')}: {ca_file} does not exist")
            options["ssl_ca_certs"] = str(ca_file)
    elif ca_file is not None:
        raise ConfigError(f"{env_name('redis_ssl_ca_file')} is set but {env_name('redis_url')} "
                          "is not a rediss:// (TLS) URL")
    pool = aioredis.ConnectionPool.from_url(url, **options)
    # the settings win over the URL's user:password@ (from_url lets the URL win)
    if settings.redis_username is not None:
        pool.connection_kwargs["username"] = settings.redis_username
    if settings.redis_password is not None:
        pool.connection_kwargs["password"] = settings.redis_password.get_secret_value()
    return pool


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def check_redis_access(client: aioredis.Redis) -> None:
    """PING once; raise ConfigError when Redis refuses us (see module docstring)."""
    credentials = f"{env_name('redis_username')} / {env_name('redis_password')}"
    try:
        await client.ping()
    except AuthenticationError:  # WRONGPASS, or NOAUTH: no user given and the default is off
        raise ConfigError(f"{credentials}: Redis refused the user name or password") from None
    except NoPermissionError:
        raise ConfigError(f"{env_name('redis_username')}: the Redis user may not run PING; "
                          "grant it ragward's commands (README: Security)") from None
    except (RedisError, OSError) as exc:
        failure = _tls_failure(exc)
        if isinstance(failure, ssl.SSLCertVerificationError):
            raise ConfigError(f"{env_name('redis_ssl_ca_file')}: the Redis server's certificate "
                              f"is not trusted ({failure.verify_message})") from None
        if failure is not None:
            raise ConfigError(f"{env_name('redis_url')}: the TLS handshake with Redis failed "
                              f"({failure.reason})") from None
        # down or unreachable: not a configuration error; the quota modes apply


async def check_redis_settings(settings: Settings) -> None:
    """:func:`check_redis_access` on a connection of its own (the CLI's start-up check)."""
    pool = redis_pool(settings, socket_connect_timeout=max(settings.redis_timeout_s, 2.0))
    client = aioredis.Redis(connection_pool=pool)
    try:
        await check_redis_access(client)
    finally:
        await client.aclose()
        await pool.aclose()
