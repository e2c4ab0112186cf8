"""An incident end to end: rag_core answers 500 → the gateway's audit events → the alert
consumer's rolling metrics → one FIRING and one RESOLVED on real Slack, email and
webhook receivers. The gateway and the alert engine share one injectable clock, so a
minute of incident takes a second of test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from alerting.clock import ManualClock
from alerting.configuration import alert_config
from alerting.consumer import AlertConsumer
from alerting.notifiers import RetryPolicy
from alerting.silences import Matcher, Silence
from alerting.state_store import StateStore, db_path
from telemetry.configuration import metrics_consumer_config
from telemetry.memory_bus import MemoryBus
from tests import receivers
from tests.alert_helpers import ERROR_RATE_RULES, rules_from_yaml
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.receivers import HttpReceiver, SmtpReceiver
from tests.upstream_server import UpstreamServer

http_receiver = receivers.http_receiver
smtp_receiver = receivers.smtp_receiver

RULES = rules_from_yaml(ERROR_RATE_RULES)
STEP = 5.0


class Traffic:
    """Each step: the clock moves 5 s, ten requests go through the gateway, the alert
    consumer catches up and evaluates once."""

    def __init__(self, gw: object, consumer: AlertConsumer, clock: ManualClock) -> None:
        self.gw, self.consumer, self.clock = gw, consumer, clock
        self.sent = 0

    async def run(self, seconds: float, tenant: str = "acme") -> None:
        for _ in range(int(seconds / STEP)):
            self.clock.advance(STEP)
            for i in range(10):
                await self.gw.client.post(  # type: ignore[attr-defined]
                    "/v1/query", json={"question": f"q{self.sent}-{i}"},
                    headers=bearer(tenant=tenant))
            self.sent += 10
            async with asyncio.timeout(10):
                while self.consumer.loop.handled < self.sent:
                    await asyncio.sleep(0.005)
            await self.consumer.service.tick()
            await self.consumer.service.idle()


def counts(http: HttpReceiver, smtp: SmtpReceiver) -> tuple[int, int, int]:
    return len(http.at("/slack")), smtp.count(), len(http.at("/hook"))


async def test_error_burst_through_the_gateway_notifies_once_and_resolves_once(
    tmp_path: Path, upstream: UpstreamServer, http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
) -> None:
    """rag_core answering 500 → exactly one FIRING Slack message, email and webhook call
    after `for`; nothing more before repeat_interval, nor after the alert consumer restarts
    mid-incident; recovery → exactly one RESOLVED of each."""
    clock = ManualClock(start=1_800_000_000.0)
    settings = gateway_settings(
        tmp_path, upstream.url, cache_enabled=False, circuit_failure_threshold=10_000,
        upstream_retries=0, slack_webhook_url=http_receiver.url("/slack"),
        alert_webhook_url=http_receiver.url("/hook"), smtp_url=smtp_receiver.url(),
        alert_email_to=["oncall@example.com"])
    bus = MemoryBus()
    fast = RetryPolicy(attempts=2, base_delay_s=0.05, max_delay_s=0.1, deadline_s=3)

    def alert_consumer() -> AlertConsumer:
        return AlertConsumer(metrics_consumer_config(settings), alert_config(settings), bus,
                             group_id="alerts", clock=clock, rules=RULES,
                             retry=fast, registry=CollectorRegistry())

    async with running_gateway(settings, bus=bus, clock=clock.now) as gw:
        consumer = alert_consumer()
        await consumer.start(run_loop=False)
        traffic = Traffic(gw, consumer, clock)
        try:
            await traffic.run(60)                              # healthy minute
            assert counts(http_receiver, smtp_receiver) == (0, 0, 0)
            upstream.behaviour.status = 500                    # the incident
            await traffic.run(35)                              # pending for `for` = 30 s
            assert counts(http_receiver, smtp_receiver) == (0, 0, 0)
            await traffic.run(15)                              # firing + group_wait
            assert counts(http_receiver, smtp_receiver) == (1, 1, 1)
            title = http_receiver.bodies("/slack")[0]["attachments"][0]["title"]
            assert title == "[FIRING:1] HighErrorRate acme (page)"
            await traffic.run(120)                             # no repeat
            assert counts(http_receiver, smtp_receiver) == (1, 1, 1)

            await consumer.stop()                              # restart mid-incident
            consumer = alert_consumer()
            await consumer.start(run_loop=False)
            traffic.consumer = consumer
            traffic.sent = consumer.loop.handled
            await traffic.run(60)
            assert counts(http_receiver, smtp_receiver) == (1, 1, 1)

            upstream.behaviour.status = 200                    # recovery
            await traffic.run(150)
            assert counts(http_receiver, smtp_receiver) == (2, 2, 2)
            resolved = http_receiver.bodies("/slack")[1]["attachments"][0]["title"]
            assert resolved.startswith("[RESOLVED] HighErrorRate acme")
            assert http_receiver.bodies("/hook")[1]["status"] == "resolved"
        finally:
            await consumer.stop()


async def test_silence_suppresses_an_incident_through_the_gateway(
    tmp_path: Path, upstream: UpstreamServer, http_receiver: HttpReceiver,
    smtp_receiver: SmtpReceiver,
) -> None:
    """A silence matching the tenant keeps the same incident from notifying anyone."""
    clock = ManualClock(start=1_800_000_000.0)
    settings = gateway_settings(
        tmp_path, upstream.url, cache_enabled=False, circuit_failure_threshold=10_000,
        upstream_retries=0, slack_webhook_url=http_receiver.url("/slack"),
        alert_webhook_url=http_receiver.url("/hook"), smtp_url=smtp_receiver.url(),
        alert_email_to=["oncall@example.com"])
    store = StateStore(db_path(settings.data_dir))
    store.open()
    store.add_silence(Silence.create(
        [Matcher.parse("tenant=acme")], starts_at=clock.now(), ends_at=clock.now() + 3600,
        created_by="test", comment="maintenance", now=clock.now()))
    store.close()
    bus = MemoryBus()
    async with running_gateway(settings, bus=bus, clock=clock.now) as gw:
        consumer = AlertConsumer(metrics_consumer_config(settings), alert_config(settings), bus,
                                 group_id="alerts", clock=clock, rules=RULES,
                                 registry=CollectorRegistry())
        await consumer.start(run_loop=False)
        try:
            upstream.behaviour.status = 500
            await Traffic(gw, consumer, clock).run(120)
            states = [a["state"] for a in consumer.service.snapshot()["alerts"]]
        finally:
            await consumer.stop()
    assert states == ["firing"]
    assert counts(http_receiver, smtp_receiver) == (0, 0, 0)
