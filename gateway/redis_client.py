"""The gateway's Redis connection: one server or a cluster, TLS and an ACL user from
its :class:`RedisConfig`, refusals made loud.

``RAGWARD_REDIS_URL`` names one server (``redis://host:port/db``, ``rediss://`` for
TLS) or a Redis Cluster: ``redis+cluster://host:port[,host:port...]`` (or
``rediss+cluster://``), the ``+cluster`` scheme and the comma-separated seed nodes
being the only differences. The scheme decides, not a probe of the server: a
gateway that starts while Redis is down still knows which client it needs. Any
seed node that answers is enough; the client learns the rest of the cluster from
it (``CLUSTER SLOTS``) and follows slot moves and fail-overs by itself. Every
tenant's keys share one hash slot (:mod:`gateway.keyspace`), so quota scripts and
cache reads work unchanged on a cluster.

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

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
)

from ragward.errors import ConfigError
from ragward.settings import env_name

__all__ = ["REDIS_FAILURES", "RedisClient", "RedisConfig", "check_redis_access",
           "check_redis_config", "is_cluster_url", "redis_connection", "redis_pool"]

#: what the gateway talks to: one server, or a cluster through redis-py's cluster client
RedisClient = aioredis.Redis | RedisCluster

# Anything that means "Redis did not answer properly": refused or dropped connections,
# timeouts (ours or the socket's), a loading or read-only server, a cluster none of
# whose nodes could be reached (redis-py raises that outside RedisError).
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    RedisError, RedisClusterException, OSError, TimeoutError,
)

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_E = TypeVar("_E", bound=BaseException)


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return url.partition("://")[0].lower() in _CLUSTER_SCHEMES


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Which Redis, and as whom: the URL (see the module docstring), the CA bundle for
    ``rediss``, and an ACL user and password that win over the URL's."""

    url: str
    ssl_ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def _transport_options(config: RedisConfig, tls: bool) -> dict[str, Any]:
    """TLS options for a ``rediss`` URL; a CA file without TLS is a mistake."""
    ca_file = config.ssl_ca_file
    if not tls:
        if ca_file is not None:
            raise ConfigError(f"{env_name('redis_ssl_ca_file')} is set but "
                              f"{env_name('redis_url')} is not a rediss:// (TLS) URL")
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if ca_file is not None:
        if not ca_file.is_file():
            raise ConfigError(f"{env_name('redis_ssl_ca_file')}: {ca_file} does not exist")
        options["ssl_ca_certs"] = str(ca_file)
    return options


def _credentials(config: RedisConfig) -> dict[str, Any]:
    """The configured user and password; they win over the URL's ``user:password@``."""
    given: dict[str, Any] = {}
    if config.username is not None:
        given["username"] = config.username
    if config.password is not None:
        given["password"] = config.password
    return given


def redis_pool(config: RedisConfig, **options: Any) -> aioredis.ConnectionPool:
    """A connection pool for a one-server URL with its TLS and user settings."""
    url = config.url
    if is_cluster_url(url):
        raise ConfigError(f"{env_name('redis_url')}: a cluster URL has no single pool")
    options |= _transport_options(config, url.startswith("rediss://"))
    pool = aioredis.ConnectionPool.from_url(url, **options)
    # from_url lets the URL win; the configured user must
    pool.connection_kwargs.update(_credentials(config))
    return pool


def _cluster_client(config: RedisConfig, **options: Any) -> RedisCluster:
    """A cluster client seeded with every ``host:port`` of the URL."""
    url = config.url
    scheme, _, rest = url.partition("://")
    plain = _CLUSTER_SCHEMES[scheme.lower()]
    seeds, slash, tail = rest.partition("/")
    user, at, hosts = seeds.rpartition("@")
    nodes: list[ClusterNode] = []
    kwargs: dict[str, Any] = {}
    try:
        for host in hosts.split(","):
            one = f"{plain}://{user}{at}{host.strip()}{slash}{tail}"
            parts = urlsplit(one)
            if not parts.hostname or parts.port is None:
                raise ValueError(f"{host.strip()!r} is not host:port")
            nodes.append(ClusterNode(parts.hostname, parts.port))
            kwargs = dict(parse_url(one))
    except ValueError as exc:
        raise ConfigError(f"{env_name('redis_url')}: a cluster URL is "
                          f"{scheme}://[user:password@]host:port[,host:port...] ({exc})") from None
    if int(kwargs.pop("db", 0) or 0) != 0:
        raise ConfigError(f"{env_name('redis_url')}: a Redis Cluster has database 0 only")
    for name in ("host", "port", "connection_class", "path"):
        kwargs.pop(name, None)
    tls = plain == "rediss"
    kwargs |= options | _transport_options(config, tls) | _credentials(config)
    return RedisCluster(startup_nodes=nodes, ssl=tls, **kwargs)


@contextlib.asynccontextmanager
async def redis_connection(config: RedisConfig, **options: Any) -> AsyncIterator[RedisClient]:
    """The client ``config`` names, closed on the way out; ``options`` go to its
    connections (timeouts, ``max_connections`` — per node on a cluster)."""
    if is_cluster_url(config.url):
        cluster = _cluster_client(config, **options)
        try:
            yield cluster
        finally:
            await cluster.aclose()
        return
    pool = redis_pool(config, **options)
    client = aioredis.Redis(connection_pool=pool)
    try:
        yield client
    finally:
        await client.aclose()
        await pool.aclose()


def _in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` or the first of its causes that is a ``kind`` (a cluster client wraps the
    seed nodes' errors in its own)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def check_redis_access(client: RedisClient) -> None:
    """PING once; raise ConfigError when Redis refuses us (see module docstring)."""
    credentials = f"{env_name('redis_username')} / {env_name('redis_password')}"
    try:
        await client.ping()
    except REDIS_FAILURES as exc:
        # WRONGPASS, or NOAUTH: no user given and the default is off
        if _in_chain(exc, AuthenticationError) is not None:
            raise ConfigError(f"{credentials}: Redis refused the user name or password") from None
        if _in_chain(exc, NoPermissionError) is not None:
            raise ConfigError(f"{env_name('redis_username')}: the Redis user may not run PING; "
                              "grant it ragward's commands (README: Security)") from None
        failure = _in_chain(exc, ssl.SSLError)
        if isinstance(failure, ssl.SSLCertVerificationError):
            raise ConfigError(f"{env_name('redis_ssl_ca_file')}: the Redis server's certificate "
                              f"is not trusted ({failure.verify_message})") from None
        if failure is not None:
            raise ConfigError(f"{env_name('redis_url')}: the TLS handshake with Redis failed "
                              f"({failure.reason})") from None
        # down or unreachable: not a configuration error; the quota modes apply


async def check_redis_config(config: RedisConfig, timeout_s: float) -> None:
    """:func:`check_redis_access` on a connection of its own (the CLI's start-up check)."""
    timeout = max(timeout_s, 2.0)
    async with redis_connection(config, socket_connect_timeout=timeout) as client:
        await check_redis_access(client)
