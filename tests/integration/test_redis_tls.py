"""The gateway on a Redis that accepts TLS only, with the default user off and an ACL user
limited to ragward's keys (:func:`ragward.devsecure.start_secure_redis`): quotas and the
cache work over it; the default user, a wrong password and an untrusted CA are refused,
and the gateway's start-up says which setting to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis.exceptions import AuthenticationError, NoPermissionError

from gateway.components import open_components
from gateway.configuration import redis_config
from gateway.metrics import GatewayMetrics
from gateway.redis_client import redis_pool
from ragward.devcerts import make_pki
from ragward.devsecure import SecureRedis
from ragward.errors import ConfigError
from ragward.settings import load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.upstream_server import UpstreamServer

# a TLS handshake on this shared 2-core machine can outlast the default 0.25 s connect bound
TLS_TIMEOUT_S = 2.0


async def test_quotas_and_cache_work_over_tls_with_an_acl_user(
    tmp_path: Path, upstream: UpstreamServer, secure_redis: SecureRedis, unique: str
) -> None:
    """Over rediss:// as the ACL user: a repeated question is served from the cache, and the
    tenant's per-minute quota answers 429 past its limit (the counters live in Redis)."""
    settings = gateway_settings(tmp_path, upstream.url, **secure_redis.overrides(), quota_rpm=3,
                                redis_timeout_s=TLS_TIMEOUT_S)
    tenant = f"t-{unique}"
    async with running_gateway(settings) as gw:
        headers = bearer(tenant=tenant)
        first = await gw.client.post("/v1/query", json={"question": "tls?"}, headers=headers)
        again = await gw.client.post("/v1/query", json={"question": "tls?"}, headers=headers)
        assert first.status_code == again.status_code == 200
        assert (first.json()["cached"], again.json()["cached"]) == (False, True)
        third = await gw.client.post("/v1/query", json={"question": "other"}, headers=headers)
        over = await gw.client.post("/v1/query", json={"question": "more"}, headers=headers)
        assert third.status_code == 200 and over.status_code == 429
    pool = redis_pool(redis_config(settings))
    client = aioredis.Redis(connection_pool=pool)
    try:
        keys = [k async for k in client.scan_iter(match="ragward:*")]
        assert any(tenant.encode() in k for k in keys)  # the quota's keys, over TLS
    finally:
        await client.aclose()
        await pool.aclose()


def _settings(secure_redis: SecureRedis, tmp_path: Path, **changes: Any) -> Any:
    values = {**secure_redis.overrides(), "redis_timeout_s": TLS_TIMEOUT_S, **changes}
    return load_settings(data_dir=tmp_path / "data", jwt_secret=TEST_SECRET,
                         rag_core_url="http://127.0.0.1:9", **values)


async def _start_gateway(settings: Any) -> None:
    async with open_components(settings, metrics=GatewayMetrics(CollectorRegistry())):
        pass


async def test_default_user_is_refused_and_the_gateway_names_the_credentials(
    tmp_path: Path, secure_redis: SecureRedis
) -> None:
    """Without a user the connection is the default user, which is off: Redis refuses it,
    and the gateway's start-up stops naming the Redis user and password settings."""
    ca_file = str(secure_redis.pki.ca_file)
    anonymous = aioredis.Redis.from_url(secure_redis.url, ssl_ca_certs=ca_file)
    try:
        with pytest.raises(AuthenticationError):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
    settings = _settings(secure_redis, tmp_path, redis_username=None, redis_password=None)
    with pytest.raises(ConfigError, match="RAGWARD_REDIS_USERNAME / RAGWARD_REDIS_PASSWORD"):
        await _start_gateway(settings)


async def test_wrong_password_and_untrusted_ca_stop_the_gateway_in_one_line(
    tmp_path: Path, secure_redis: SecureRedis
) -> None:
    """A wrong password names the credentials (not the password); a CA that did not sign the
    server's certificate names RAGWARD_REDIS_SSL_CA_FILE."""
    wrong = "wrong-redis-password-123"
    with pytest.raises(ConfigError) as refused:
        await _start_gateway(_settings(secure_redis, tmp_path, redis_password=wrong))
    assert "RAGWARD_REDIS_PASSWORD" in str(refused.value) and wrong not in str(refused.value)
    other_ca = make_pki(tmp_path / "other").ca_file
    with pytest.raises(ConfigError, match=r"^RAGWARD_REDIS_SSL_CA_FILE: .*not trusted"):
        await _start_gateway(_settings(secure_redis, tmp_path, redis_ssl_ca_file=other_ca))


async def test_the_acl_user_cannot_touch_keys_outside_ragward(
    tmp_path: Path, secure_redis: SecureRedis
) -> None:
    """The gateway's Redis user is limited to ragward's keys: another key is refused."""
    pool = redis_pool(redis_config(_settings(secure_redis, tmp_path)))
    client = aioredis.Redis(connection_pool=pool)
    try:
        await client.set("ragward:probe", b"1")
        with pytest.raises(NoPermissionError):
            await client.set("someone-else:key", b"1")
    finally:
        await client.aclose()
        await pool.aclose()


def test_the_gateway_command_stops_in_one_line_on_a_refused_redis_password(
    tmp_path: Path, secure_redis: SecureRedis
) -> None:
    """`ragward gateway` with a wrong Redis password exits 2 before serving, with one line
    naming the Redis credentials and not the password."""
    from ragward.settings import env_name

    wrong = "wrong-redis-password-456"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGWARD_")}
    env |= {env_name(k): str(v) for k, v in secure_redis.overrides().items()}
    env |= {"RAGWARD_REDIS_PASSWORD": wrong, "RAGWARD_JWT_SECRET": TEST_SECRET,
            "RAGWARD_DATA_DIR": str(tmp_path), "RAGWARD_RAG_CORE_URL": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "ragward.cli", "gateway"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines == ["ragward: RAGWARD_REDIS_USERNAME / RAGWARD_REDIS_PASSWORD: Redis refused "
                     "the user name or password"]
