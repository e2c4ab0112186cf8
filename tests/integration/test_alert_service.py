"""The alert service end to end: audit events → telemetry's RollingMetrics → rules →
grouping → real Slack/webhook (aiohttp) and SMTP (aiosmtpd) receivers, on the injectable
clock; state and notification log survive a restart; a dead receiver blocks nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerting.clock import ManualClock
from alerting.configuration import alert_config
from alerting.consumer import AlertConsumer
from alerting.notifiers import RetryPolicy
from alerting.notifiers.format import rfc3339
from alerting.service import PRUNE_INTERVAL_S, AlertService
from alerting.silences import Matcher, Silence
from alerting.state_store import RETENTION_S, StateStore, db_path
from alerting.view import Sample
from ragward.settings import Settings, load_settings
from telemetry.configuration import kafka_config, metrics_consumer_config
from telemetry.events import AuditEvent, alert_decoder, new_event_id
from telemetry.memory_bus import MemoryBus, MemoryPublisher
from tests import receivers
from tests.alert_helpers import ERROR_RATE_RULES, ScriptedView, rules_from_yaml
from tests.conftest import TEST_SECRET
from tests.receivers import HttpReceiver, SmtpReceiver, free_port
from tests.signing_support import sign

http_receiver = receivers.http_receiver
smtp_receiver = receivers.smtp_receiver

RULES = rules_from_yaml(ERROR_RATE_RULES)
FAST = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.2, deadline_s=5)
STEP = 5.0  # seconds of clock per evaluation (settings.alert_eval_interval_s)


def _settings(tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver | None,
              **extra: Any) -> Settings:
    options: dict[str, Any] = {
        "data_dir": tmp_path / "data", "jwt_secret": TEST_SECRET,
        "slack_webhook_url": http.url("/slack"), "alert_webhook_url": http.url("/hook"),
        "alert_eval_interval_s": STEP,
    }
    if smtp is not None:
        options |= {"smtp_url": smtp.url(), "alert_email_to": ["oncall@example.com"]}
    return load_settings(**(options | extra))


def _ts(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


def _handled_at_least(consumer: AlertConsumer, count: int) -> bool:
    return consumer.loop.handled >= count


class Incident:
    """Drives one consumer: publish audit events at the clock's time, wait until they are
    consumed, evaluate once, wait for the deliveries it started."""

    def __init__(self, bus: MemoryBus, settings: Settings, clock: ManualClock) -> None:
        self.bus, self.settings, self.clock = bus, settings, clock
        self.publisher: MemoryPublisher = bus.publisher()
        self.published = 0
        self.consumer: AlertConsumer | None = None

    async def open(self, **options: Any) -> AlertConsumer:
        self.consumer = AlertConsumer(metrics_consumer_config(self.settings),
                                      alert_config(self.settings), self.bus, group_id="alerts-e2e",
                                      clock=self.clock, rules=RULES, retry=FAST,
                                      registry=CollectorRegistry(), **options)
        await self.consumer.start(run_loop=False)
        self.base = self.published  # a restarted consumer resumes at the committed offset
        return self.consumer

    async def step(self, requests: int = 20, errors: int = 0,
                   tenants: tuple[str, ...] = ("acme",)) -> None:
        assert self.consumer is not None
        self.clock.advance(STEP)
        for tenant in tenants:
            for i in range(requests):
                event = AuditEvent(event_id=new_event_id(), request_id=new_event_id(),
                                   ts=_ts(self.clock.now()), tenant=tenant, route="/v1/query",
                                   method="POST", status=500 if i < errors else 200,
                                   decision="error" if i < errors else "allow", latency_ms=12.0)
                await self.publisher.publish(self.settings.topic_audit, tenant, sign(event))
            self.published += requests
        consumer = self.consumer
        await _until(lambda: consumer.loop.handled >= self.published - self.base)
        await consumer.service.tick()
        await consumer.service.idle()

    async def run(self, seconds: float, **traffic: Any) -> None:
        for _ in range(int(seconds / STEP)):
            await self.step(**traffic)


def _counts(http: HttpReceiver, smtp: SmtpReceiver) -> tuple[int, int, int]:
    return len(http.at("/slack")), smtp.count(), len(http.at("/hook"))


async def test_incident_fires_once_repeats_never_resolves_once_and_survives_restart(
        tmp_path: Path, http_receiver: HttpReceiver, smtp_receiver: SmtpReceiver) -> None:
    """500s push the real rolling error rate over 5 %: exactly one FIRING Slack message, email
    and webhook call once `for` (30 s) and group_wait (10 s) have passed; nothing more for
    the next 10 minutes, nor after the consumer restarts mid-incident on the same state db;
    recovery sends exactly one RESOLVED of each; every state change is on the alerts topic."""
    settings = _settings(tmp_path, http_receiver, smtp_receiver)
    bus, clock = MemoryBus(), ManualClock()
    incident = Incident(bus, settings, clock)
    consumer = await incident.open()
    try:
        await incident.run(60, errors=0)                      # a healthy minute
        assert _counts(http_receiver, smtp_receiver) == (0, 0, 0)
        await incident.step(errors=20)                        # rag_core answers 500
        states = [a["state"] for a in consumer.service.snapshot()["alerts"]]
        assert states == ["pending"]
        await incident.run(25, errors=20)
        assert consumer.service.snapshot()["alerts"][0]["state"] == "pending"
        await incident.step(errors=20)                        # `for` (30 s) passed: firing
        assert consumer.service.snapshot()["alerts"][0]["state"] == "firing"
        await incident.step(errors=20)
        assert _counts(http_receiver, smtp_receiver) == (0, 0, 0)   # group_wait (10 s)
        await incident.step(errors=20)
        assert _counts(http_receiver, smtp_receiver) == (1, 1, 1)
        slack = http_receiver.bodies("/slack")[0]["attachments"][0]
        assert slack["title"] == "[FIRING:1] HighErrorRate acme (page)"
        assert slack["color"] == "danger"
        hook = http_receiver.bodies("/hook")[0]
        assert hook["status"] == "firing" and hook["alerts"][0]["labels"]["tenant"] == "acme"
        assert hook["groupKey"] == '{}:{alertname="HighErrorRate", tenant="acme"}'
        [mail] = smtp_receiver.messages
        assert mail["Subject"] == "[FIRING:1] HighErrorRate acme (page)"
        assert mail["To"] == "oncall@example.com"

        await incident.run(600, errors=10)                    # 10 more minutes, no repeat
        assert _counts(http_receiver, smtp_receiver) == (1, 1, 1)

        await consumer.stop()                                 # restart mid-incident
        consumer = await incident.open()
        await incident.run(300, errors=10)
        assert _counts(http_receiver, smtp_receiver) == (1, 1, 1)
        assert consumer.service.snapshot()["alerts"][0]["state"] == "firing"

        await incident.run(60, errors=0)                      # recovery over the 1m window
        await incident.run(60, errors=0)                      # and the next group_interval
        assert _counts(http_receiver, smtp_receiver) == (2, 2, 2)
        resolved = http_receiver.bodies("/slack")[1]["attachments"][0]
        assert resolved["title"].startswith("[RESOLVED] HighErrorRate acme")
        assert resolved["color"] == "good"
        assert http_receiver.bodies("/hook")[1]["alerts"][0]["status"] == "resolved"
        assert smtp_receiver.messages[1]["Subject"].startswith("[RESOLVED] HighErrorRate acme")
        await incident.run(600, errors=0)
        assert _counts(http_receiver, smtp_receiver) == (2, 2, 2)
        sent = consumer.registry.get_sample_value(
            "ragward_alert_notifications_total", {"receiver": "slack", "outcome": "success"})
        assert sent == 1  # counted by the restarted service: the RESOLVED
    finally:
        await consumer.stop()
    events = [alert_decoder.decode(r.value) for r in bus.records(settings.topic_alerts)]
    assert [e.state for e in events] == ["pending", "firing", "resolved"]
    assert {e.fingerprint for e in events} == {events[0].fingerprint}
    assert events[1].labels == {"alertname": "HighErrorRate", "severity": "page",
                                "tenant": "acme"}
    assert bus.records(settings.topic_alerts)[0].key == b"acme"


async def test_silence_suppresses_notifications_but_not_state(
        tmp_path: Path, http_receiver: HttpReceiver, smtp_receiver: SmtpReceiver) -> None:
    """A silence on tenant=acme (stored as the CLI stores it) holds back every notification of
    acme's incident, firing and resolved, while globex's incident is notified and both are
    published on the alerts topic."""
    settings = _settings(tmp_path, http_receiver, smtp_receiver)
    bus, clock = MemoryBus(), ManualClock()
    with StateStore(db_path(settings.data_dir)) as store:
        store.add_silence(Silence.create([Matcher.parse("tenant=acme")], clock.now(),
                                         clock.now() + 3600, created_by="test", now=clock.now()))
    incident = Incident(bus, settings, clock)
    consumer = await incident.open()
    try:
        await incident.run(60, errors=10, tenants=("acme", "globex"))
        assert {a["labels"]["tenant"]: a["silencedBy"] != []
                for a in consumer.service.snapshot()["alerts"]} == {"acme": True,
                                                                   "globex": False}
        assert [b["groupLabels"]["tenant"] for b in http_receiver.bodies("/hook")] == ["globex"]
        await incident.run(120, errors=0, tenants=("acme", "globex"))
        assert [(b["groupLabels"]["tenant"], b["status"])
                for b in http_receiver.bodies("/hook")] == [("globex", "firing"),
                                                            ("globex", "resolved")]
        assert len(http_receiver.at("/slack")) == 2 and smtp_receiver.count() == 2
    finally:
        await consumer.stop()
    states = [(e.labels["tenant"], e.state) for e in
              (alert_decoder.decode(r.value) for r in bus.records(settings.topic_alerts))]
    assert ("acme", "firing") in states and ("acme", "resolved") in states


async def test_resolve_just_before_a_stop_is_sent_after_the_restart(
        tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """An incident that resolves in the service's last evaluation before it stops (no flush
    yet) gets its RESOLVED from the restarted service, exactly once; the FIRING is not
    repeated."""
    settings = _settings(tmp_path, http_receiver, None)
    view, clock = ScriptedView(), ManualClock()

    def service() -> AlertService:
        return AlertService(alert_config(settings), view, None, rules=RULES, clock=clock,
                            retry=FAST, registry=CollectorRegistry())

    first = service()
    await first.start(run_loop=False)
    try:
        view.set("error_rate", Sample({"tenant": "acme"}, 0.5, 100))
        for _ in range(9):                                    # firing, then flushed
            await first.tick()
            clock.advance(STEP)
        await first.idle()
        assert len(http_receiver.at("/hook")) == 1
        view.set("error_rate", Sample({"tenant": "acme"}, 0.0, 100))
        await first.tick()                                    # resolved, flush not due
        await first.idle()
    finally:
        await first.stop()
    assert len(http_receiver.at("/hook")) == 1
    second = service()
    await second.start(run_loop=False)
    try:
        for _ in range(30):
            clock.advance(STEP)
            await second.tick()
        await second.idle()
    finally:
        await second.stop()
    assert [b["status"] for b in http_receiver.bodies("/hook")] == ["firing", "resolved"]
    assert len(http_receiver.at("/slack")) == 2


async def test_dead_receiver_is_counted_and_never_delays_evaluation(
        tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """Slack's URL points at a closed port: its delivery fails after its retries and is
    counted, evaluation ticks return at once meanwhile, the webhook is delivered anyway,
    and the failed delivery is tried again at the next group_interval."""
    settings = _settings(tmp_path, http_receiver, None,
                         slack_webhook_url=f"http://127.0.0.1:{free_port()}/slack")
    view, clock = ScriptedView(), ManualClock()
    registry = CollectorRegistry()
    slow_retry = RetryPolicy(attempts=3, base_delay_s=0.4, max_delay_s=1.0, deadline_s=5)
    service = AlertService(alert_config(settings), view, None, rules=RULES, clock=clock,
                           registry=registry,
                           retry=slow_retry)
    await service.start(run_loop=False)
    loop = asyncio.get_running_loop()
    try:
        view.set("error_rate", Sample({"tenant": "acme"}, 0.5, 100))
        for _ in range(8):                                    # 40 s: firing + group_wait
            await service.tick()
            clock.advance(STEP)
        started = loop.time()
        await service.tick()                                  # the flush: deliveries start
        for _ in range(5):
            clock.advance(STEP)
            await service.tick()
        assert loop.time() - started < 0.2, "evaluation waited for a delivery"
        await http_receiver.wait_for("/hook", 1)
        failures = {"receiver": "slack", "outcome": "failure"}
        assert registry.get_sample_value("ragward_alert_notifications_total", failures) is None
        await service.idle()
        assert loop.time() - started >= 0.2                   # the retries did take time
        assert registry.get_sample_value("ragward_alert_notifications_total", failures) == 1
        assert registry.get_sample_value(
            "ragward_alert_notifications_total", {"receiver": "webhook", "outcome": "success"}
        ) == 1
        assert registry.get_sample_value("ragward_alerts_firing",
                                         {"alertname": "HighErrorRate"}) == 1
        for _ in range(12):                                   # next group_interval
            clock.advance(STEP)
            await service.tick()
        await service.idle()
        assert registry.get_sample_value("ragward_alert_notifications_total", failures) == 2
        assert len(http_receiver.at("/hook")) == 1            # webhook was not repeated
    finally:
        await service.stop()


async def test_stop_cancels_a_hanging_delivery(tmp_path: Path) -> None:
    """A receiver that accepts the connection and never answers does not hang stop():
    after the grace period the delivery is cancelled and counted as a failure."""
    hanging = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hanging.set()
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = load_settings(data_dir=tmp_path / "data", jwt_secret=TEST_SECRET,
                             alert_webhook_url=f"http://127.0.0.1:{port}/hook")
    view, clock, registry = ScriptedView(), ManualClock(), CollectorRegistry()
    service = AlertService(alert_config(settings), view, None, rules=RULES, clock=clock,
                           registry=registry,
                           stop_grace_s=0.2)
    await service.start(run_loop=False)
    try:
        view.set("error_rate", Sample({"tenant": "acme"}, 0.5, 100))
        for _ in range(9):
            await service.tick()
            clock.advance(STEP)
        await asyncio.wait_for(hanging.wait(), 2)
    finally:
        started = asyncio.get_running_loop().time()
        await service.stop()
        server.close()
        await server.wait_closed()
    assert asyncio.get_running_loop().time() - started < 2
    assert registry.get_sample_value("ragward_alert_notifications_total",
                                     {"receiver": "webhook", "outcome": "failure"}) == 1


async def test_service_loop_runs_on_its_own(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """start() with the loop evaluates every alert_eval_interval_s without anyone ticking."""
    settings = _settings(tmp_path, http_receiver, None, alert_eval_interval_s=0.05)
    view = ScriptedView()
    view.set("error_rate", Sample({"tenant": "acme"}, 0.5, 100))
    rules = rules_from_yaml("""
rules:
  - {name: HighErrorRate, metric: error_rate, threshold: 0.05, group_by: [tenant]}
routing: {group_wait: 0s, receivers: [webhook]}
""")
    service = AlertService(alert_config(settings), view, None, rules=rules,
                           registry=CollectorRegistry())
    await service.start()
    try:
        [request] = await http_receiver.wait_for("/hook", 1)
        assert request.json()["alerts"][0]["labels"]["tenant"] == "acme"
    finally:
        await service.stop()


async def test_retention_runs_while_the_service_runs(tmp_path: Path,
                                                    http_receiver: HttpReceiver) -> None:
    """A long-running service forgets what is past retention — not only at its next start:
    once an incident's notifications are older than RETENTION_S, an evaluation drops them
    from the in-memory notification log and from the store's log and history."""
    settings = _settings(tmp_path, http_receiver, None)
    view, clock = ScriptedView(), ManualClock()
    rules = rules_from_yaml("""
rules:
  - {name: HighErrorRate, metric: error_rate, threshold: 0.05, group_by: [tenant]}
routing: {group_wait: 0s, receivers: [webhook]}
""")
    service = AlertService(alert_config(settings), view, None, rules=rules, clock=clock,
                           registry=CollectorRegistry())
    await service.start(run_loop=False)
    try:
        view.set("error_rate", Sample({"tenant": "acme"}, 0.5, 100))
        await service.tick()
        await service.idle()
        view.set("error_rate", Sample({"tenant": "acme"}, 0.0, 100))
        clock.advance(60)
        await service.tick()
        await service.idle()
        assert len(http_receiver.at("/hook")) == 2  # firing, then resolved
        [key] = service.dispatcher.groups()
        assert service.dispatcher.nflog(key, "webhook") is not None
        assert service.store.notifications()
        clock.advance(RETENTION_S + PRUNE_INTERVAL_S)
        await service.tick()
        assert service.dispatcher.nflog(key, "webhook") is None
        assert service.store.notifications() == [] and service.store.load_nflog() == []
    finally:
        await service.stop()


@pytest.mark.kafka
async def test_alert_consumer_on_kafka(tmp_path: Path, kafka_bootstrap: str, unique: str,
                                       http_receiver: HttpReceiver) -> None:
    """`ragward consumer alerts` wiring on a real broker: audit events with status 500 on the
    audit topic fire the webhook, and the state changes land on the alerts topic."""
    from telemetry.kafka_bus import KafkaBus

    settings = _settings(tmp_path, http_receiver, None, kafka_bootstrap=kafka_bootstrap,
                         topic_audit=f"audit-{unique}", topic_usage=f"usage-{unique}",
                         topic_alerts=f"alerts-{unique}", topic_dead_letter=f"dlq-{unique}")
    rules = rules_from_yaml("""
rules:
  - {name: HighErrorRate, metric: error_rate, threshold: 0.05, min_requests: 5,
     group_by: [tenant], for: 10s}
routing: {group_wait: 5s, receivers: [webhook]}
""")
    bus = KafkaBus(kafka_config(settings, spool_dir=tmp_path / "spool"))
    clock = ManualClock(datetime.now(UTC).timestamp())
    consumer = AlertConsumer(metrics_consumer_config(settings), alert_config(settings), bus,
                             group_id=f"alerts-{unique}", clock=clock,
                             rules=rules, retry=FAST, from_beginning=True)
    publisher = bus.publisher()
    await publisher.start()
    await consumer.start(run_loop=False)
    try:
        for step in range(4):
            for status in (500, 200, 500):
                event = AuditEvent(event_id=new_event_id(), request_id=new_event_id(),
                                   ts=_ts(clock.now()), tenant="acme", route="/v1/query",
                                   status=status)
                await publisher.publish(settings.topic_audit, "acme", sign(event))
            await _until(partial(_handled_at_least, consumer, 3 * (step + 1)), timeout_s=30)
            await consumer.service.tick()
            clock.advance(STEP)
        await consumer.service.tick()
        await consumer.service.idle()
        [request] = await http_receiver.wait_for("/hook", 1)
        assert request.json()["alerts"][0]["labels"]["tenant"] == "acme"
    finally:
        await consumer.stop()
        await publisher.stop()
    reader = bus.subscribe([settings.topic_alerts], f"check-{unique}", from_beginning=True)
    await reader.start()
    try:
        records = []
        for _ in range(20):
            records += await reader.poll(1.0)
            if len(records) >= 2:
                break
        assert [alert_decoder.decode(r.value).state for r in records] == ["pending", "firing"]
    finally:
        await reader.stop()


async def test_alertmanager_receiver_posts_each_state_and_keeps_firing_alerts_alive(
        tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """RAGWARD_ALERTMANAGER_URL: the alert is posted to /api/v2/alerts as soon as it fires
    (Alertmanager groups, so ragward's group_wait does not apply), a 503 is retried, the
    firing alert is re-posted every resend interval with endsAt four intervals ahead (so
    Alertmanager keeps it while ragward runs), the resolution is posted once with endsAt = the
    moment it resolved, and nothing follows."""
    path = "/api/v2/alerts"
    http_receiver.script(path, receivers.Reply(503, "busy"))
    settings = _settings(tmp_path, http_receiver, None, alertmanager_url=http_receiver.url("/"),
                         alertmanager_resend_s=60, alert_external_url="https://alerts.example")
    bus, clock = MemoryBus(), ManualClock()
    incident = Incident(bus, settings, clock)
    consumer = await incident.open()
    try:
        assert "alertmanager" in consumer.service.snapshot()["receivers"]
        await incident.run(60, errors=0)
        await incident.run(30, errors=20)                     # pending for `for` (30 s)
        assert http_receiver.at(path) == []
        await incident.step(errors=20)                        # firing: posted at once
        fired = clock.now()
        [firing] = consumer.service.engine.alerts()
        first, retried = http_receiver.bodies(path)
        assert first == retried == [{
            "labels": {"alertname": "HighErrorRate", "severity": "page", "tenant": "acme"},
            "annotations": firing.annotations,
            "startsAt": rfc3339(fired), "endsAt": rfc3339(fired + 240),
            "generatorURL": "https://alerts.example/api/alerts",
        }]
        await incident.run(55, errors=20)
        assert len(http_receiver.at(path)) == 2               # not before the resend interval
        await incident.step(errors=20)
        [[again]] = http_receiver.bodies(path)[2:]
        assert again["startsAt"] == rfc3339(fired) and again["endsAt"] == rfc3339(clock.now()
                                                                                + 240)
        await incident.run(120, errors=0)                     # recovery over the 1m window
        [alert] = consumer.service.engine.alerts()
        assert alert.state == "resolved" and alert.resolved_at is not None
        bodies = http_receiver.bodies(path)
        ended = [b for b in bodies if b[0]["endsAt"] == rfc3339(alert.resolved_at)]
        assert ended == [bodies[-1]]                          # resolved: once, last
        await incident.run(300, errors=0)
        assert http_receiver.bodies(path) == bodies
    finally:
        await consumer.stop()
