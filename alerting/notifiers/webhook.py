"""Generic webhook in Alertmanager's webhook format (version "4").

Receivers written for Alertmanager (``alertmanager-webhook-*``, Opsgenie/PagerDuty
bridges, chat bots) accept these bodies unchanged::

    {"version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0,
     "status": "firing", "receiver": "webhook", "groupLabels": {...},
     "commonLabels": {...}, "commonAnnotations": {...}, "externalURL": "...",
     "alerts": [{"status", "labels", "annotations", "startsAt", "endsAt",
                 "generatorURL", "fingerprint"}]}
"""

from __future__ import annotations

from typing import Any

import httpx

from alerting.grouping import Notification
from alerting.notifiers import post_json
from alerting.notifiers.format import MessageData, webhook_alert


def payload(data: MessageData, max_alerts: int = 0) -> dict[str, Any]:
    alerts = list(data.alerts)
    truncated = 0
    if max_alerts and len(alerts) > max_alerts:
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    return {
        "receiver": data.receiver,
        "status": data.status,
        "alerts": [webhook_alert(a) for a in alerts],
        "groupLabels": data.group_labels,
        "commonLabels": data.common_labels,
        "commonAnnotations": data.common_annotations,
        "externalURL": data.external_url,
        "version": "4",
        "groupKey": data.group_key,
        "truncatedAlerts": truncated,
    }


class WebhookNotifier:
    name = "webhook"

    def __init__(self, client: httpx.AsyncClient, url: str, *, external_url: str = "",
                 max_alerts: int = 0) -> None:
        self._client = client
        self._url = url
        self._external_url = external_url
        self._max_alerts = max_alerts

    async def send(self, notification: Notification) -> None:
        body = payload(MessageData.of(notification, self._external_url), self._max_alerts)
        await post_json(self._client, self._url, body, self.name)
