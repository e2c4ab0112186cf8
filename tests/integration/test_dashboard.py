"""`ragward consumer metrics` as its own process on real Kafka: /ready, /health, the JSON
snapshot, /metrics that Debian's promtool accepts, and the live dashboard rendered by
headless Chromium with charts full of data (screenshot in tests/artifacts/)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ragward import devservices
from ragward.settings import Settings
from telemetry.configuration import kafka_config, metrics_consumer_config
from telemetry.events import StatusEvent, new_event_id
from telemetry.kafka_bus import KafkaBus
from tests.integration.test_events_pipeline import (
    TENANTS,
    Load,
    iso,
    kafka_settings,
    make_load,
    publish_load,
)
from tests.signing_support import sign

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHARTS = ["chart-rate", "chart-errors", "chart-latency", "chart-tokens", "chart-cost"]
TEAM_METRICS = [
    "ragward_requests_total", "ragward_request_latency_seconds_bucket", "ragward_tokens_total",
    "ragward_cost_usd_total", "ragward_cache_hits_total", "ragward_cache_lookups_total",
    "ragward_rolling_error_rate", "ragward_rolling_request_rate",
    "ragward_rolling_latency_seconds", "ragward_rolling_tokens_avg", "ragward_consumer_lag",
    "ragward_events_consumed_total", "ragward_events_duplicate_total",
    "ragward_last_event_timestamp_seconds", "ragward_quota_degraded",
    "ragward_audit_spool_fill_ratio",
]


@dataclass
class Service:
    url: str
    settings: Settings
    load: Load
    process: asyncio.subprocess.Process


@pytest.fixture(scope="module")
async def metrics_service(kafka_bootstrap: str) -> AsyncIterator[Service]:
    """Events for an hour of traffic on Kafka, and the metrics consumer command reading them."""
    tmp = Path(tempfile.mkdtemp(prefix="ragward-dash-"))
    unique = new_event_id()[:10]
    settings = kafka_settings(tmp, kafka_bootstrap, unique)
    load = make_load(3000, seed=4, spread_s=3500)
    await publish_load(KafkaBus(kafka_config(settings)), settings, load)
    publisher = KafkaBus(kafka_config(settings, spool_dir=tmp / "status-spool")).publisher()
    await publisher.start()
    try:
        status = StatusEvent(event_id=new_event_id(), ts=iso(time.time()), instance="gw-1",
                             quota_degraded={"rpm": True, "tokens": False}, spool_bytes=1024,
                             spool_capacity_bytes=4096)
        await publisher.publish(settings.topic_usage, "gw-1", sign(status))
    finally:
        await publisher.stop()
    port = devservices.free_port()
    env = {**os.environ, "RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "RAGWARD_DATA_DIR": str(tmp / "data"), "RAGWARD_TOPIC_AUDIT": settings.topic_audit,
           "RAGWARD_TOPIC_USAGE": settings.topic_usage,
           "RAGWARD_TOPIC_DEAD_LETTER": settings.topic_dead_letter, "RAGWARD_LOG_LEVEL": "info"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ragward.cli", "consumer", "metrics", "--port", str(port),
        "--group", f"metrics-{unique}",
        cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        total = len(load.audits) + len(load.usages) + 1
        async with httpx.AsyncClient(timeout=2.0) as client:
            deadline = time.monotonic() + 30
            while True:
                if process.returncode is not None:
                    assert process.stderr is not None
                    raise AssertionError((await process.stderr.read()).decode()[-2000:])
                try:
                    snap = (await client.get(f"{url}/api/metrics/snapshot")).json()
                    if snap["consumer"]["handled"] >= total:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "metrics consumer did not catch up"
                await asyncio.sleep(0.2)
        yield Service(url, settings, load, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            code = await process.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        assert process.stderr is not None
        logs = (await process.stderr.read()).decode()
        # uvicorn re-raises SIGTERM after its graceful shutdown, hence -15 rather than 0
        assert code in (0, -signal.SIGTERM), f"exited with {code}: {logs[-2000:]}"
        assert "metrics_consumer.stopped" in logs, logs[-2000:]


async def test_command_is_ready_and_snapshot_has_every_tenant(metrics_service: Service) -> None:
    """/health and /ready answer 200; the snapshot has per-tenant figures for the three
    windows and a 60-point hour of history, with request counts matching the events."""
    async with httpx.AsyncClient(base_url=metrics_service.url, timeout=5) as client:
        assert (await client.get("/health")).status_code == 200
        ready = await client.get("/ready")
        assert ready.status_code == 200, ready.text
        snap = (await client.get("/api/metrics/snapshot")).json()
    assert set(snap["windows"]) == {"1m", "5m", "1h"}
    one_hour = snap["windows"]["1h"]
    assert sum(f["requests"] for f in one_hour.values()) == len(metrics_service.load.audits)
    assert set(snap["series"]["tenants"]) == set(TENANTS)
    assert len(snap["series"]["t"]) == 60
    assert snap["status"]["gw-1"]["quota_degraded"] == {"rpm": True, "tokens": False}


async def test_metrics_output_passes_promtool(metrics_service: Service) -> None:
    """The consumer's /metrics passes `promtool check metrics` and carries the team's names."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run deploy/install-system-deps.sh (Debian's prometheus)")
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{metrics_service.url}/metrics")
    assert response.status_code == 200
    text = response.text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr
    for name in TEAM_METRICS:
        assert re.search(rf"^{name}[{{ ]", text, re.M), name
    assert 'ragward_quota_degraded{control="rpm",instance="gw-1"} 1.0' in text
    assert 'ragward_audit_spool_fill_ratio{instance="gw-1"} 0.25' in text
    requests = sum(float(v) for v in re.findall(r"^ragward_requests_total\{.*\} (\S+)$", text,
                                                re.M))
    assert requests == len(metrics_service.load.audits)


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(binary).exists():
        pytest.fail("chromium not found: run deploy/install-system-deps.sh")
    profile = tempfile.mkdtemp(prefix="ragward-chromium-")
    try:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1300",
             "--virtual-time-budget=5000", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def test_dashboard_renders_live_charts_with_data_in_chromium(
    metrics_service: Service,
) -> None:
    """Headless Chromium loads /dashboard, which fetches the snapshot and draws five SVG
    charts, each with a line of several points per tenant, a legend and a tenant table;
    screenshots (light and dark) go to tests/artifacts/."""
    url = f"{metrics_service.url}/dashboard"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    light, dark = ARTIFACTS / "dashboard-light.png", ARTIFACTS / "dashboard-dark.png"
    for shot in (light, dark):
        shot.unlink(missing_ok=True)
    dom = await asyncio.to_thread(chromium, "--dump-dom", f"--screenshot={light}",
                                  f"{url}?theme=light")
    html = dom.stdout
    assert "<svg" in html, dom.stderr[-2000:]
    for chart in CHARTS:
        section = re.search(rf'<figure[^>]*id="{chart}".*?</figure>', html, re.S)
        assert section, chart
        lines = re.findall(r'<polyline[^>]*points="([^"]+)"', section.group(0))
        assert len(lines) >= len(TENANTS), (chart, len(lines))
        assert max(len(points.split()) for points in lines) > 30, chart
        assert "time (last hour" in section.group(0)  # axis label
    legend = re.search(r'<div class="legend" id="legend">(.*?)</div>', html, re.S)
    assert legend and all(t in legend.group(1) for t in TENANTS)
    rows = re.findall(r"<tr><td><span class=\"sw\"", html)
    assert len(rows) >= len(TENANTS) - 1  # 1m window may miss a quiet tenant
    result = await asyncio.to_thread(chromium, f"--screenshot={dark}", f"{url}?theme=dark")
    for shot in (light, dark):
        assert shot.exists() and shot.stat().st_size > 50_000, result.stderr[-2000:]


async def test_dashboard_router_mounts_under_a_prefix_in_another_app(tmp_path: Path) -> None:
    """metrics_router(consumer, "/ops") serves the page and the snapshot under the prefix, and
    the page fetches the snapshot from that prefixed path (how `ragward serve` mounts it)."""
    from litestar import Litestar
    from litestar.testing import AsyncTestClient

    from ragward.settings import load_settings
    from telemetry.memory_bus import MemoryBus
    from telemetry.metrics_consumer import MetricsConsumer, metrics_router

    settings = load_settings(data_dir=tmp_path / "data")
    bus = MemoryBus()
    load = make_load(200, seed=2)
    await publish_load(bus, settings, load)
    consumer = MetricsConsumer(metrics_consumer_config(settings), bus)
    await consumer.start()
    try:
        app = Litestar(route_handlers=[metrics_router(consumer, "/ops")])
        async with AsyncTestClient(app) as client:
            page = await client.get("/ops/dashboard")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert '"/ops/api/metrics/snapshot"' in page.text
            assert "__SNAPSHOT_URL__" not in page.text and "/*SCRIPT*/" not in page.text
            total = len(load.audits) + len(load.usages)
            deadline = time.monotonic() + 10
            while consumer.loop.handled < total and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            snap = (await client.get("/ops/api/metrics/snapshot")).json()
            assert sum(f["requests"] for f in snap["windows"]["1h"].values()) == len(load.audits)
    finally:
        await consumer.stop()
