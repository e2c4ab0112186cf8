"""A client can cause 4xx but never page anyone (issue 15).

Real gateway (split mode, quotas on real Redis) → audit events on real Kafka → the
alert consumer with the packaged default rules, on one injectable clock. Minutes of
every kind of client error — missing and hostile tokens (an ``"alg": ["HS256"]``
header used to be a 500 and paged), forbidden roles, unknown paths, wrong methods,
invalid and 100,000-deep bodies, oversized bodies, quota 429s and clients hanging up
mid-upload (Litestar calls that a 500) — fire nothing and notify no one. Then the
upstream answers 502 and HighErrorRate pages: server errors still count.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from alerting.clock import ManualClock
from alerting.configuration import alert_config
from alerting.consumer import AlertConsumer
from alerting.rules import load_rules
from telemetry.configuration import make_bus, metrics_consumer_config
from tests import receivers
from tests.conftest import TEST_SECRET
from tests.gateway_harness import RunningGateway, bearer, gateway_settings, running_gateway
from tests.receivers import HttpReceiver
from tests.upstream_server import UpstreamServer

http_receiver = receivers.http_receiver
STEP = 5.0


def _alg_list_token() -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    now = int(time.time())
    claims = {"sub": "x", "tenant": "acme", "exp": now + 600}
    signing_input = f"{part({'alg': ['HS256']})}.{part(claims)}"
    mac = hmac.new(TEST_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


async def _hang_up_mid_upload(gw: RunningGateway) -> None:
    """Send the headers and half a body, then close the connection."""
    host, port = str(gw.client.base_url).removeprefix("http://").rstrip("/").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    token = bearer()["Authorization"]
    writer.write(f"POST /v1/query HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
                 '{"question": "half'.encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


def client_errors(gw: RunningGateway) -> list[Callable[[], Awaitable[object]]]:
    """Ten requests, each a different way for a client to be wrong."""
    post = gw.client.post
    return [
        lambda: post("/v1/query", json={"question": "q"}),                        # 401
        lambda: post("/v1/query", json={"question": "q"},
                     headers={"Authorization": f"Bearer {_alg_list_token()}"}),   # 401
        lambda: post("/v1/query", json={"question": "q"},
                     headers=bearer(roles=["compliance"])),                       # 403
        lambda: gw.client.get("/v1/nowhere", headers=bearer()),                   # 404
        lambda: gw.client.get("/v1/query", headers=bearer()),                     # 405
        lambda: post("/v1/query", json={"question": 7}, headers=bearer()),        # 422
        lambda: post("/v1/query", content="[" * 100_000 + "]" * 100_000,
                     headers={**bearer(), "Content-Type": "application/json"}),  # 400
        lambda: post("/v1/query", json={"question": "x" * 300_000}, headers=bearer()),  # 413
        lambda: post("/v1/query", json={"question": "q"}, headers=bearer(tenant="greedy")),
        lambda: _hang_up_mid_upload(gw),                                          # 499
    ]


async def run(gw: RunningGateway, consumer: AlertConsumer, clock: ManualClock,
              seconds: float, requests: Callable[[], list[Callable[[], Awaitable[object]]]],
              sent: list[int]) -> None:
    """Each step: the clock moves 5 s, the requests go out, the alert consumer catches
    up with every audit event and evaluates once."""
    for _ in range(int(seconds / STEP)):
        clock.advance(STEP)
        batch = requests()
        for request in batch:
            await request()
        sent[0] += len(batch)
        async with asyncio.timeout(30):
            while consumer.loop.handled < sent[0]:
                await asyncio.sleep(0.01)
        await consumer.service.tick()
        await consumer.service.idle()


async def test_client_errors_page_no_one_but_upstream_502s_fire_high_error_rate(
    tmp_path: Path, upstream: UpstreamServer, http_receiver: HttpReceiver,
    kafka_bootstrap: str, redis_url: str, unique: str,
) -> None:
    """Three minutes of 400/401/403/404/405/413/422/429/499 (4xx only, on every rule of
    the default set): no alert pending or firing, no notification. Then rag_core answers
    502 for three minutes: HighErrorRate fires for the tenant and Slack is paged."""
    clock = ManualClock(start=1_800_000_000.0)
    settings = gateway_settings(
        tmp_path, upstream.url, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
        topic_audit=f"audit-{unique}", topic_usage=f"usage-{unique}",
        topic_alerts=f"alerts-{unique}", cache_enabled=False, upstream_retries=0,
        circuit_failure_threshold=100_000, quota_rpm=100_000,
        quotas={"tenants": {"greedy": {"rpm": 1}}},
        slack_webhook_url=http_receiver.url("/slack"))
    bus = make_bus(settings)
    async with running_gateway(settings, bus=bus, clock=clock.now) as gw:
        consumer = AlertConsumer(metrics_consumer_config(settings), alert_config(settings), bus,
                                 group_id=f"alerts-{unique}", clock=clock,
                                 rules=load_rules(None), registry=CollectorRegistry(),
                                 from_beginning=True)
        await consumer.start(run_loop=False)
        sent = [0]
        try:
            statuses = [getattr(await r(), "status_code", 499) for r in client_errors(gw)]
            assert statuses == [401, 401, 403, 404, 405, 422, 400, 413, 200, 499]
            sent[0] += len(statuses)
            await run(gw, consumer, clock, 180, lambda: client_errors(gw), sent)
            active = [(a["alertname"], a["state"]) for a in consumer.service.snapshot()["alerts"]
                      if a["state"] in ("pending", "firing")]
            assert active == []
            assert http_receiver.at("/slack") == []

            upstream.behaviour.status = 502
            def failing() -> list[Callable[[], Awaitable[object]]]:
                return [lambda i=i: gw.client.post("/v1/query", json={"question": f"q{i}"},
                                                   headers=bearer()) for i in range(10)]
            await run(gw, consumer, clock, 180, failing, sent)
            firing = {(a["alertname"], a["labels"].get("tenant")): a["state"]
                      for a in consumer.service.snapshot()["alerts"]}
            assert firing[("HighErrorRate", "acme")] == "firing"
            titles = [body["attachments"][0]["title"] for body in http_receiver.bodies("/slack")]
            assert "[FIRING:1] HighErrorRate acme (page)" in titles
        finally:
            await consumer.stop()
