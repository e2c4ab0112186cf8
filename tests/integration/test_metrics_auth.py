"""`RAGWARD_METRICS_AUTH=token`: every page that shows tenants' figures needs a bearer token
whose roles grant `metrics:read` — the gateway, `ragward serve`, and the consumers' HTTP
(the real commands, on real Kafka)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from ragward import devservices
from ragward.serve import create_serve_app
from ragward.settings import DEFAULT_ROLES, load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway, serving
from tests.upstream_server import UpstreamServer

REPO = Path(__file__).resolve().parents[2]
ROLES = {**DEFAULT_ROLES, "scraper": ["metrics:read"]}


async def _assert_protected(client: httpx.AsyncClient, path: str) -> None:
    """401 (with WWW-Authenticate) without a token, 403 for roles without metrics:read —
    `admin` too — and 200 for the scraper role."""
    anonymous = await client.get(path)
    assert anonymous.status_code == 401, (path, anonymous.text)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.json()["error"]["code"] == "invalid_token"
    for roles in (["reader"], ["admin"]):
        refused = await client.get(path, headers=bearer(roles=roles))
        assert refused.status_code == 403, (path, roles, refused.text)
        assert "ragward_" not in refused.text
    allowed = await client.get(path, headers=bearer(sub="prometheus", tenant="ops",
                                                    roles=["scraper"]))
    assert allowed.status_code == 200, (path, allowed.text)


async def test_gateway_metrics_need_a_metrics_read_token(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """The gateway's /metrics with RAGWARD_METRICS_AUTH=token; without the option it stays
    open (the default), and the older RAGWARD_METRICS_PUBLIC=false means token too."""
    settings = gateway_settings(tmp_path, upstream.url, metrics_auth="token", roles=ROLES)
    async with running_gateway(settings) as gw:
        await _assert_protected(gw.client, "/metrics")
        scraped = await gw.client.get("/metrics", headers=bearer(roles=["scraper"]))
        assert "ragward_gateway_requests_total" in scraped.text
    async with running_gateway(gateway_settings(tmp_path / "open", upstream.url)) as gw:
        assert (await gw.client.get("/metrics")).status_code == 200
    assert load_settings(metrics_public=False).metrics_auth == "token"


async def test_serve_protects_metrics_dashboard_and_snapshot(tmp_path: Path) -> None:
    """`ragward serve`: /metrics, /dashboard and /api/metrics/snapshot all need the token."""
    settings = load_settings(data_dir=tmp_path / "data", jwt_secret=TEST_SECRET,
                             metrics_auth="token", roles=ROLES)
    async with serving(create_serve_app(settings)) as url, \
            httpx.AsyncClient(base_url=url, timeout=30) as client:
        for path in ("/metrics", "/dashboard", "/api/metrics/snapshot"):
            await _assert_protected(client, path)


@pytest.mark.parametrize("kind", ["metrics", "audit", "alerts"])
async def test_consumer_commands_protect_their_metrics(
    tmp_path: Path, kafka_bootstrap: str, kind: str
) -> None:
    """`ragward consumer metrics|audit|alerts` with RAGWARD_METRICS_AUTH=token: /metrics
    (and the metrics consumer's dashboard and snapshot, the alert consumer's /api/alerts)
    need the token; /health stays open for probes."""
    unique = uuid.uuid4().hex[:10]
    port = devservices.free_port()
    env = {**os.environ, "RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "RAGWARD_DATA_DIR": str(tmp_path / "data"), "RAGWARD_TOPIC_AUDIT": f"audit-{unique}",
           "RAGWARD_TOPIC_USAGE": f"usage-{unique}", "RAGWARD_TOPIC_ALERTS": f"alerts-{unique}",
           "RAGWARD_TOPIC_DEAD_LETTER": f"dead-{unique}", "RAGWARD_METRICS_AUTH": "token",
           "RAGWARD_JWT_SECRET": TEST_SECRET,
           "RAGWARD_ROLES": '{"scraper": ["metrics:read"], "reader": ["query"], "admin": ["*"]}'}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ragward.cli", "consumer", kind, "--port", str(port),
        "--group", f"{kind}-{unique}", cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 40
            while True:
                if process.returncode is not None:
                    assert process.stderr is not None
                    raise AssertionError((await process.stderr.read()).decode()[-2000:])
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"consumer {kind} did not start"
                await asyncio.sleep(0.2)
            paths = {"metrics": ["/metrics", "/dashboard", "/api/metrics/snapshot"],
                     "audit": ["/metrics"], "alerts": ["/metrics", "/api/alerts"]}[kind]
            for path in paths:
                await _assert_protected(client, path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
