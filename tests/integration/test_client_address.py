"""Client addresses in audit events: one policy in every gateway process and the store
(issue 16, bug 1: a random salt per process, and IPv4-mapped clients as ``::/48``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragward.settings import load_settings
from telemetry.client_address import ClientAddressPolicy
from telemetry.events import AuditEvent
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.integration.test_gateway_kafka import read_events
from tests.integration.test_gateway_processes import two_gateways
from tests.upstream_server import UpstreamServer

HASH_KEY = "client-address-key-0123456789abcdef"


async def test_two_gateway_processes_give_one_client_one_hash(
    tmp_path: Path, upstream: UpstreamServer, kafka_bootstrap: str, unique: str
) -> None:
    """Two `ragward gateway` processes with RAGWARD_AUDIT_CLIENT_IP=hash: the same client
    (this test, on 127.0.0.1) has the same keyed hash in both processes' audit events,
    the one the store's policy gives for that address with the same key — and the store
    keeps it as it is (no second HMAC)."""
    topic = f"audit-{unique}"
    env = {"RAGWARD_JWT_SECRET": TEST_SECRET, "RAGWARD_RAG_CORE_URL": upstream.url,
           "RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap, "RAGWARD_TOPIC_AUDIT": topic,
           "RAGWARD_TOPIC_USAGE": f"usage-{unique}", "RAGWARD_AUDIT_CLIENT_IP": "hash",
           "RAGWARD_AUDIT_IP_HASH_KEY": HASH_KEY, "RAGWARD_LOG_LEVEL": "warning"}
    async with two_gateways(env, tmp_path) as urls, httpx.AsyncClient(timeout=10) as client:
        for url in urls:
            response = await client.get(url + "/v1/usage", headers=bearer(tenant=unique))
            assert response.status_code == 200
        # read while the gateways run: an event spooled on a slow ack drains meanwhile
        events = [e for e in await read_events(kafka_bootstrap, topic, 2, timeout=60)
                  if isinstance(e, AuditEvent)]
    store = ClientAddressPolicy.from_settings(
        load_settings(audit_client_ip="hash", audit_ip_hash_key=HASH_KEY))
    addresses = {e.client_addr for e in events}
    assert len(events) == 2 and addresses == {store.apply("127.0.0.1")}
    assert store.apply(events[0].client_addr) == events[0].client_addr


@pytest.fixture
def dual_stack() -> Iterator[socket.socket]:
    """An IPv6 listening socket that takes IPv4 connections: their peers appear as
    IPv4-mapped addresses (``::ffff:127.0.0.1``), as behind many load balancers."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::ffff:127.0.0.1", 0))
    sock.listen(64)
    with sock:
        yield sock


async def test_an_ipv4_client_on_a_dual_stack_socket_keeps_its_ipv4_network(
    tmp_path: Path, upstream: UpstreamServer, dual_stack: socket.socket
) -> None:
    """Truncate mode: a client reaching the gateway as ``::ffff:127.0.0.1`` is audited
    as ``127.0.0.0/24``, like the same client on an IPv4 socket — not as ``::/48``."""
    settings = gateway_settings(tmp_path, upstream.url)
    async with running_gateway(settings, sock=dual_stack) as gw:
        response = await gw.client.get("/v1/usage", headers=bearer())
        mapped = gw.audit_events()
    async with running_gateway(settings) as gw:
        await gw.client.get("/v1/usage", headers=bearer())
        plain = gw.audit_events()
    assert response.status_code == 200
    assert [e.client_addr for e in mapped] == [e.client_addr for e in plain] == ["127.0.0.0/24"]
