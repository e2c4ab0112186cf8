"""Alertmanager receiver: ragward's alerts posted to Alertmanager's v2 API, as Prometheus does.

Alertmanager is not one more chat channel: it groups, deduplicates, silences and
routes on its own. So this receiver does what Prometheus's notifier does, not
what ragward's grouped receivers do: every alert goes individually to
``POST /api/v2/alerts`` as::

    [{"labels": {"alertname": "HighErrorRate", "tenant": "acme", "severity": "page"},
      "annotations": {"summary": "..."},
      "startsAt": "2026-12-02T04:40:00.000Z", "endsAt": "2026-12-02T04:44:00.000Z",
      "generatorURL": "https://alerts.example/api/alerts"}]

* firing: ``endsAt`` is ``now + 4 x resend`` and the alert is posted again every
  ``resend`` seconds while it fires, so Alertmanager keeps it active while ragward
  runs and resolves it by itself if ragward stops (Prometheus's ``validUntil``);
* resolved: ``endsAt`` is the moment it resolved, posted once.

:class:`Forwarding` decides what is due (Prometheus's ``needsSending``): an
alert never posted, an alert whose state changed since, or a firing alert last
posted ``resend`` seconds ago. Labels and annotations go as the rules made them
(severity ``page``/``ticket`` is a label for Alertmanager's routes); the URL,
which may carry credentials, is never logged nor put into an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx

from alerting.engine import Alert
from alerting.grouping import Notification
from alerting.notifiers import post_json
from alerting.notifiers.format import rfc3339
from alerting.silences import Silence, muted_by

VALIDITY_FACTOR = 4
"""A firing alert stays active in Alertmanager for this many resend intervals."""


def postable_alert(alert: Alert, *, now: float, valid_for_s: float,
                   generator_url: str = "") -> dict[str, Any]:
    """One alert in Alertmanager's ``postableAlert`` shape."""
    starts = alert.fired_at if alert.fired_at is not None else alert.active_at
    ends = alert.resolved_at if alert.state == "resolved" else None
    body: dict[str, Any] = {
        "labels": dict(sorted(alert.labels.items())),
        "annotations": dict(sorted(alert.annotations.items())),
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends if ends is not None else now + valid_for_s),
    }
    if generator_url:  # optional in the API: left out rather than sent empty
        body["generatorURL"] = generator_url
    return body


def payload(alerts: Iterable[Alert], *, now: float, valid_for_s: float,
            generator_url: str = "") -> list[dict[str, Any]]:
    return [postable_alert(a, now=now, valid_for_s=valid_for_s, generator_url=generator_url)
            for a in alerts]


class AlertmanagerNotifier:
    name = "alertmanager"

    def __init__(self, client: httpx.AsyncClient, base_url: str, *, resend_s: float = 60.0,
                 external_url: str = "", clock: Callable[[], float]) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/api/v2/alerts"
        self.resend_s = resend_s
        self._generator_url = f"{external_url.rstrip('/')}/api/alerts" if external_url else ""
        self._clock = clock

    async def send(self, notification: Notification) -> None:
        body = payload(notification.alerts, now=self._clock(),
                       valid_for_s=VALIDITY_FACTOR * self.resend_s,
                       generator_url=self._generator_url)
        await post_json(self._client, self._url, body, self.name)


class Forwarding:
    """What Alertmanager has been told, per alert fingerprint: state and when."""

    def __init__(self, resend_s: float) -> None:
        self.resend_s = resend_s
        self._posted: dict[str, tuple[str, float]] = {}
        self.in_flight = False

    def due(self, alerts: Sequence[Alert], now: float,
            silences: Sequence[Silence] = ()) -> list[Alert]:
        """Firing and resolved alerts to post at ``now`` (ragward's silences hold back firing
        ones); forgets alerts the engine no longer keeps."""
        present = {a.fingerprint for a in alerts}
        for fingerprint in [fp for fp in self._posted if fp not in present]:
            del self._posted[fingerprint]
        out = []
        for alert in alerts:
            if alert.state == "pending":
                continue
            if alert.state == "firing" and muted_by(silences, alert.labels, now):
                continue
            posted = self._posted.get(alert.fingerprint)
            if (posted is None or posted[0] != alert.state
                    or (alert.state == "firing" and now - posted[1] >= self.resend_s)):
                out.append(alert)
        return out

    def posted(self, alerts: Iterable[Alert], at: float) -> None:
        for alert in alerts:
            self._posted[alert.fingerprint] = (alert.state, at)
