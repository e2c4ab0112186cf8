"""How ``RAGWARD_REDIS_URL`` names a Redis Cluster: ``redis+cluster://`` with seed nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from gateway.redis_client import RedisConfig, is_cluster_url, redis_connection, redis_pool
from ragward.errors import ConfigError


def test_the_scheme_decides_whether_a_url_is_a_cluster() -> None:
    """``redis+cluster://`` and ``rediss+cluster://`` (any case) are clusters; plain
    ``redis://`` / ``rediss://`` are one server."""
    assert is_cluster_url("redis+cluster://h:1") and is_cluster_url("REDISS+CLUSTER://h:1")
    assert not is_cluster_url("redis://h:1/0") and not is_cluster_url("rediss://h:1/0")


async def test_every_seed_node_user_and_tls_reach_the_cluster_client(tmp_path: Path) -> None:
    """Each comma-separated host:port is a seed node; the configured ACL user wins over
    the URL's; ``rediss+cluster`` verifies the certificate against the CA file."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not read until a connection is made")
    config = RedisConfig(url="rediss+cluster://u:p@10.0.0.1:7000,[::1]:7001",
                         username="ragward-gateway", password="pw", ssl_ca_file=ca_file)
    async with redis_connection(config, socket_connect_timeout=0.5) as client:
        assert isinstance(client, RedisCluster)
        seeds = client.nodes_manager.startup_nodes
        assert set(seeds) == {"10.0.0.1:7000", "::1:7001"}
        kwargs = client.nodes_manager.connection_kwargs
        assert (kwargs["username"], kwargs["password"]) == ("ragward-gateway", "pw")
        assert kwargs["ssl_ca_certs"] == str(ca_file) and kwargs["ssl_cert_reqs"] == "required"
        assert kwargs["socket_connect_timeout"] == 0.5


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://h:7000/2", "database 0 only"),
    ("redis+cluster://h:7000,h", "is not host:port"),
    ("redis+cluster://h:port", "host:port"),
])
async def test_a_malformed_cluster_url_names_the_variable(url: str, says: str) -> None:
    """A database other than 0, a seed without a port or with a bad one: a ConfigError
    naming RAGWARD_REDIS_URL, before any connection."""
    with pytest.raises(ConfigError, match=rf"^RAGWARD_REDIS_URL: .*{says}"):
        async with redis_connection(RedisConfig(url=url)):
            pass


def test_a_cluster_url_has_no_single_pool() -> None:
    """The one-server pool refuses a cluster URL instead of connecting to one seed."""
    with pytest.raises(ConfigError, match=r"^RAGWARD_REDIS_URL: a cluster URL"):
        redis_pool(RedisConfig(url="redis+cluster://h:7000"))
