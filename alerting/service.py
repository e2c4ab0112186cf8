"""AlertService: evaluate rules on a timer, notify receivers, persist, publish.

The one object both ``ragward consumer alerts`` and ``ragward serve`` run::

    service = AlertService(config, view, publisher, registry=registry)
    await service.start()          # restores state, starts the evaluation loop
    ...
    await service.stop()           # stops the loop, awaits (then cancels) deliveries

Every ``config.eval_interval_s`` a :meth:`tick` evaluates the rules
against the :class:`~alerting.view.MetricsView`, saves state changes to the
state store, queues an :class:`~telemetry.events.AlertEvent` per transition for
``config.topic``, regroups alerts and starts the notifications that are
due. With an Alertmanager URL configured, every tick also posts to Alertmanager
the alerts it must hear about (:mod:`alerting.notifiers.alertmanager`: each alert
on its own, outside ragward's grouping, which Alertmanager does itself).
Deliveries and publishing run in background tasks (bounded concurrency),
so a slow or dead receiver or broker never delays the next evaluation. The
service does not start or stop the publisher: its owner does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerting.clock import Clock, SystemClock
from alerting.engine import Alert, Engine, Transition
from alerting.grouping import Dispatcher, NflogEntry, Notification, group_key
from alerting.notifiers import Notifier, NotifyError, RetryPolicy, deliver
from alerting.notifiers.alertmanager import AlertmanagerNotifier, Forwarding
from alerting.notifiers.email import EmailNotifier, SmtpConfig
from alerting.notifiers.format import rfc3339
from alerting.notifiers.slack import SlackNotifier
from alerting.notifiers.webhook import WebhookNotifier
from alerting.rules import RuleSet
from alerting.state_store import RETENTION_S, StateStore
from alerting.view import MetricsView
from telemetry.bus import Publisher
from telemetry.events import AlertEvent, encode, new_event_id

log = structlog.get_logger(__name__)

_PUBLISH_QUEUE = 10_000
PRUNE_INTERVAL_S = 3600.0  # how often retention runs while the service runs


def _event_ts(at: float | None) -> str | None:
    """Event timestamps as telemetry writes them (microseconds); None stays None."""
    return None if at is None else rfc3339(at, "microseconds")


def alert_event(transition: Transition) -> AlertEvent:
    alert = transition.alert
    return AlertEvent(
        event_id=new_event_id(),
        ts=_event_ts(transition.at) or "",
        alertname=alert.alertname,
        state=transition.state,
        fingerprint=alert.fingerprint,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        value=alert.value,
        starts_at=_event_ts(alert.fired_at if alert.fired_at is not None else alert.active_at),
        ends_at=_event_ts(alert.resolved_at),
    )


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "ragward_alert_notifications_total", "Alert notifications by receiver and outcome.",
            ["receiver", "outcome"], registry=registry,
        )
        self.firing = Gauge(
            "ragward_alerts_firing", "Alerts currently firing, by rule.", ["alertname"],
            registry=registry,
        )
        self.evaluation = Histogram(
            "ragward_alert_evaluation_seconds", "Time to evaluate every rule once.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5), registry=registry,
        )
        self.events_dropped = Counter(
            "ragward_alert_events_dropped_total",
            "Alert state-change events not published (queue full or publisher failing).",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Receivers:
    """Where notifications go: each receiver whose URL (or SMTP server) is set."""

    slack_webhook_url: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)
    smtp: SmtpConfig | None = None
    alertmanager_url: str | None = field(default=None, repr=False)  # may carry a password
    alertmanager_resend_s: float = 60.0  # firing alerts re-posted this often


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """The rules, where their state is kept, the topic state changes are published on,
    how often they are evaluated, where operators reach this service, and the receivers."""

    rules: RuleSet
    state_path: Path
    topic: str
    eval_interval_s: float
    external_url: str = ""
    receivers: Receivers = field(default_factory=Receivers)


def build_notifiers(receivers: Receivers, client: httpx.AsyncClient, *, external_url: str = "",
                    tls_context: ssl.SSLContext | None = None) -> list[Notifier]:
    """One notifier per receiver configured (URL or SMTP set)."""
    notifiers: list[Notifier] = []
    if receivers.slack_webhook_url is not None:
        notifiers.append(SlackNotifier(client, receivers.slack_webhook_url,
                                       external_url=external_url))
    if receivers.smtp is not None:
        notifiers.append(EmailNotifier(receivers.smtp, external_url=external_url,
                                       tls_context=tls_context))
    if receivers.webhook_url is not None:
        notifiers.append(WebhookNotifier(client, receivers.webhook_url,
                                         external_url=external_url))
    return notifiers


def alertmanager_notifier(receivers: Receivers, client: httpx.AsyncClient, clock: Clock, *,
                          external_url: str = "") -> AlertmanagerNotifier | None:
    """The Alertmanager receiver when its URL is configured, else None."""
    if receivers.alertmanager_url is None:
        return None
    return AlertmanagerNotifier(client, receivers.alertmanager_url,
                                resend_s=receivers.alertmanager_resend_s,
                                external_url=external_url, clock=clock.now)


class AlertService:
    def __init__(
        self,
        config: AlertConfig,
        view: MetricsView,
        publisher: Publisher | None = None,
        *,
        rules: RuleSet | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        notifiers: Sequence[Notifier] | None = None,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        max_concurrent_notifications: int = 4,
        stop_grace_s: float = 5.0,
        external_url: str = "",
        store_path: Path | None = None,
        email_tls_context: ssl.SSLContext | None = None,
    ) -> None:
        """Build the service; nothing runs and nothing is opened until :meth:`start`.

        ``rules``, ``store_path`` and ``external_url`` default to ``config``'s, ``notifiers``
        to the receivers it configures. ``http_client``, when given, is used and not closed
        (otherwise one pooled client is made in :meth:`start` and closed in :meth:`stop`).
        """
        self.config = config
        self.view = view
        self.publisher = publisher
        self.rules = rules if rules is not None else config.rules
        self.clock: Clock = clock or SystemClock()
        self.metrics = AlertMetrics(registry if registry is not None else CollectorRegistry())
        self.retry = retry or RetryPolicy()
        self.store = StateStore(store_path or config.state_path)
        self.engine = Engine(self.rules, view)
        self._given_notifiers = list(notifiers) if notifiers is not None else None
        self._client = http_client
        self._own_client = http_client is None
        self._external_url = external_url or config.external_url
        self._email_tls_context = email_tls_context
        self._notifiers: dict[str, Notifier] = {}
        self._alertmanager: AlertmanagerNotifier | None = None
        self._forwarding: Forwarding | None = None
        self._dispatcher: Dispatcher | None = None
        self._semaphore = asyncio.Semaphore(max_concurrent_notifications)
        self._stop_grace_s = stop_grace_s
        self._deliveries: set[asyncio.Task[None]] = set()
        self._events: asyncio.Queue[AlertEvent] = asyncio.Queue(_PUBLISH_QUEUE)
        self._publisher_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._started = False
        self._next_prune = 0.0

    # -- lifecycle -------------------------------------------------------------
    @property
    def receivers(self) -> tuple[str, ...]:
        forwarded = (self._alertmanager.name,) if self._alertmanager is not None else ()
        return (*self._notifiers, *forwarded)

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            raise RuntimeError("AlertService is not started")
        return self._dispatcher

    async def start(self, *, run_loop: bool = True) -> None:
        """Open the state store, restore alerts and the notification log, start the loop.

        ``run_loop=False`` leaves evaluation to explicit :meth:`tick` calls (tests).
        """
        if self._started:
            return
        now = self.clock.now()
        self.engine.warmup_from = now
        self.store.open()
        try:
            self.store.prune(now)
            self._next_prune = now + PRUNE_INTERVAL_S
            restored = self.store.load_alerts()
            self._record(self.engine.restore(restored, now))
            notifiers = self._given_notifiers
            wants_http = notifiers is None or self.config.receivers.alertmanager_url is not None
            if self._client is None and wants_http:
                self._client = httpx.AsyncClient(
                    timeout=httpx.Timeout(10.0, connect=5.0),
                    limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
                    headers={"User-Agent": "ragward-alerting"},
                )
            if self._client is not None:
                self._alertmanager = alertmanager_notifier(
                    self.config.receivers, self._client, self.clock,
                    external_url=self._external_url)
                if self._alertmanager is not None:
                    self._forwarding = Forwarding(self._alertmanager.resend_s)
            if notifiers is None:
                assert self._client is not None
                notifiers = build_notifiers(self.config.receivers, self._client,
                                            external_url=self._external_url,
                                            tls_context=self._email_tls_context)
            by_name = {n.name: n for n in notifiers}
            self._notifiers = {r: by_name[r] for r in self.rules.routing.receivers if r in by_name}
            self._dispatcher = Dispatcher(self.rules.routing, tuple(self._notifiers),
                                          self.store.load_nflog())
        except BaseException:
            await self._close_resources()
            raise
        self._started = True
        self._publisher_task = asyncio.create_task(self._publish_loop(), name="alert-events")
        if run_loop:
            self._loop_task = asyncio.create_task(self._run(), name="alert-evaluation")
        log.info("alert_service_started", rules=len(self.rules.rules), source=self.rules.source,
                 receivers=list(self.receivers), restored=len(restored))
        if not self.receivers:
            log.warning("alert_no_receivers",
                        hint="set RAGWARD_SLACK_WEBHOOK_URL, RAGWARD_SMTP_URL, "
                             "RAGWARD_ALERT_WEBHOOK_URL or RAGWARD_ALERTMANAGER_URL")

    async def stop(self) -> None:
        """Stop evaluating; give deliveries and events ``stop_grace_s`` to finish, then cancel."""
        if not self._started:
            return
        self._started = False
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        pending = set(self._deliveries)
        if self._publisher_task is not None:
            pending.add(asyncio.create_task(self._events.join()))
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._stop_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("alert_service_stop_cancelled", tasks=len(late))
        if self._publisher_task is not None:
            self._publisher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher_task
            self._publisher_task = None
        await self._close_resources()
        log.info("alert_service_stopped")

    async def _close_resources(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None
        self.store.close()

    async def idle(self) -> None:
        """Wait until every started delivery and queued event is done (tests, shutdown)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)
        if self._publisher_task is not None:
            await self._events.join()

    def snapshot(self) -> dict[str, Any]:
        """Alerts and silences as JSON-able data (``GET /api/alerts``)."""
        now = self.clock.now()
        silences = self.store.silences(now) if self.store.is_open else []
        alerts = []
        for alert in sorted(self.engine.alerts(), key=lambda a: (a.rule, a.fingerprint)):
            alerts.append({
                "alertname": alert.alertname,
                "state": alert.state,
                "fingerprint": alert.fingerprint,
                "labels": alert.labels,
                "annotations": alert.annotations,
                "value": alert.value,
                "activeAt": _event_ts(alert.active_at),
                "startsAt": _event_ts(alert.fired_at),
                "endsAt": _event_ts(alert.resolved_at),
                "silencedBy": [s.id for s in silences if s.mutes(alert.labels, now)],
            })
        return {
            "alerts": alerts,
            "silences": [
                {"id": s.id, "matchers": [str(m) for m in s.matchers],
                 "startsAt": _event_ts(s.starts_at), "endsAt": _event_ts(s.ends_at),
                 "createdBy": s.created_by, "comment": s.comment}
                for s in silences
            ],
            "receivers": list(self.receivers),
            "rules": self.rules.source,
        }

    # -- evaluation ------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.eval_interval_s
        next_at = loop.time()
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("alert_evaluation_failed")
            next_at = max(next_at + interval, loop.time())
            await asyncio.sleep(next_at - loop.time())

    async def tick(self) -> list[Transition]:
        """One evaluation: rules → state → store → events → grouping → deliveries started."""
        dispatcher = self.dispatcher
        now = self.clock.now()
        with self.metrics.evaluation.time():
            transitions = self.engine.evaluate(now)
        self._record(transitions)
        firing: dict[str, int] = {rule.name: 0 for rule in self.rules.rules}
        for alert in self.engine.alerts():
            if alert.state == "firing":
                firing[alert.rule] = firing.get(alert.rule, 0) + 1
        for name, count in firing.items():
            self.metrics.firing.labels(name).set(count)
        silences = self.store.silences(now)
        notifiable = self.engine.notifiable()
        dispatcher.update(notifiable, now)
        for notification in dispatcher.due(now, silences):
            self._start_delivery(notification)
        if now >= self._next_prune:
            self._prune(dispatcher, now)
        if self._forwarding is not None and not self._forwarding.in_flight:
            due = self._forwarding.due(notifiable, now, silences)
            if due:
                self._start_forward(due, now)
        return transitions

    def _prune(self, dispatcher: Dispatcher, now: float) -> None:
        """Retention while running, not only at start: the store's log and history and the
        dispatcher's in-memory log would otherwise grow with every group ever notified."""
        self._next_prune = now + PRUNE_INTERVAL_S
        self.store.prune(now)
        dispatcher.forget(now - RETENTION_S)

    def _record(self, transitions: list[Transition]) -> None:
        changed, removed = self.engine.take_changes()
        self.store.save_alerts(changed, removed)
        for transition in transitions:
            log.info("alert_state_changed", alertname=transition.alert.alertname,
                     fingerprint=transition.alert.fingerprint, previous=transition.previous,
                     state=transition.state, value=transition.alert.value)
            if self.publisher is None:
                continue
            try:
                self._events.put_nowait(alert_event(transition))
            except asyncio.QueueFull:
                self.metrics.events_dropped.inc()
                log.error("alert_event_dropped", reason="queue full",
                          alertname=transition.alert.alertname)

    # -- deliveries ------------------------------------------------------------
    def _start_delivery(self, notification: Notification) -> None:
        if not notification.alerts:
            # All resolved with send_resolved off: nothing to say, but the log must know.
            self.dispatcher.done(notification, delivered=True)
            self.store.record_notification(notification, "skipped", self.clock.now())
            return
        task = asyncio.create_task(self._deliver(notification),
                                   name=f"alert-notify-{notification.receiver}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def _start_forward(self, alerts: list[Alert], now: float) -> None:
        """Post ``alerts`` to Alertmanager in the background, one post in flight at a time."""
        assert self._alertmanager is not None and self._forwarding is not None
        firing = frozenset(a.fingerprint for a in alerts if a.state == "firing")
        resolved = frozenset(a.fingerprint for a in alerts if a.state == "resolved")
        key = group_key({})  # Alertmanager groups; ragward's groups do not apply here
        notification = Notification(
            receiver=self._alertmanager.name, group_key=key, group_labels={},
            status="firing" if firing else "resolved", alerts=tuple(alerts),
            entry=NflogEntry(key, self._alertmanager.name, firing, resolved, now),
        )
        self._forwarding.in_flight = True
        task = asyncio.create_task(self._forward(self._alertmanager, self._forwarding,
                                                 notification), name="alert-forward")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _forward(self, notifier: Notifier, forwarding: Forwarding,
                       notification: Notification) -> None:
        try:
            if await self._attempt(notifier, notification):
                forwarding.posted(notification.alerts, notification.entry.at)
        finally:
            forwarding.in_flight = False

    async def _deliver(self, notification: Notification) -> None:
        delivered = False
        try:
            delivered = await self._attempt(self._notifiers[notification.receiver], notification)
        finally:
            self.dispatcher.done(notification, delivered=delivered)
            if self.store.is_open:
                self.store.record_notification(notification,
                                               "success" if delivered else "failure",
                                               self.clock.now())

    async def _attempt(self, notifier: Notifier, notification: Notification) -> bool:
        """Deliver with retries; log and count the outcome; True when it was delivered."""
        outcome = "failure"
        try:
            async with self._semaphore:
                attempts = await deliver(notifier, notification, self.retry)
            outcome = "success"
            log.info("alert_notification_sent", receiver=notification.receiver,
                     group=notification.group_key, status=notification.status,
                     alerts=len(notification.alerts), attempts=attempts)
        except NotifyError as exc:
            log.warning("alert_notification_failed", receiver=notification.receiver,
                        group=notification.group_key, error=str(exc))
        except Exception:
            log.exception("alert_notification_failed", receiver=notification.receiver,
                          group=notification.group_key)
        finally:
            self.metrics.notifications.labels(notification.receiver, outcome).inc()
        return outcome == "success"

    async def _publish_loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                if self.publisher is not None:
                    await self.publisher.publish(
                        self.config.topic, event.labels.get("tenant", "-"), encode(event)
                    )
            except Exception:
                self.metrics.events_dropped.inc()
                log.exception("alert_event_publish_failed", alertname=event.alertname)
            finally:
                self._events.task_done()
