"""Slack incoming webhook, in Alertmanager's default attachment format.

One attachment per notification: ``title`` is Alertmanager's subject
(``[FIRING:2] HighErrorRate acme (page)``), ``color`` ``danger`` while anything
fires and ``good`` once resolved, ``fields`` the labels every alert shares,
``text`` one block per alert (summary, description, start/end, labels),
``mrkdwn_in`` as Alertmanager sets it. Every piece of text that comes from
labels or annotations is escaped for Slack (``&``, ``<``, ``>``), so a tenant
name or an annotation cannot inject links or ``<!channel>`` mentions.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from alerting.engine import Alert
from alerting.grouping import Notification
from alerting.notifiers import post_json
from alerting.notifiers.format import MessageData, rfc3339, subject


def escape(text: str) -> str:
    """Slack's three control characters, as its API documentation asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _alert_text(alert: Alert) -> str:
    summary = alert.annotations.get("summary") or alert.labels.get("alertname", alert.rule)
    severity = alert.labels.get("severity")
    head = f"*Alert:* {escape(summary)}"
    if severity:
        head += f" - `{escape(severity)}`"
    lines = [head]
    if alert.annotations.get("description"):
        lines.append(f"*Description:* {escape(alert.annotations['description'])}")
    if alert.state == "resolved":
        lines.append(f"*Resolved:* {rfc3339(alert.resolved_at)}")
    else:
        lines.append(f"*Started:* {rfc3339(alert.fired_at or alert.active_at)}")
    lines.append("*Details:*")
    lines.extend(
        f"  • *{escape(name)}:* `{escape(value)}`" for name, value in sorted(alert.labels.items())
    )
    return "\n".join(lines)


def payload(data: MessageData, *, username: str = "ragward", channel: str | None = None
            ) -> dict[str, Any]:
    title = escape(subject(data))
    link = (f"{data.external_url}/#/alerts?receiver={quote(data.receiver)}"
            if data.external_url else "")
    attachment: dict[str, Any] = {
        "title": title,
        "color": "danger" if data.status == "firing" else "good",
        "text": "\n\n".join(_alert_text(a) for a in data.alerts),
        "fallback": f"{title} | {link}" if link else title,
        "fields": [
            {"title": escape(name), "value": escape(value), "short": True}
            for name, value in data.common_labels.items()
            if name != "alertname"
        ],
        "mrkdwn_in": ["fallback", "pretext", "text"],
    }
    if link:
        attachment["title_link"] = link
    body: dict[str, Any] = {"username": username, "attachments": [attachment]}
    if channel:
        body["channel"] = channel
    return body


class SlackNotifier:
    name = "slack"

    def __init__(self, client: httpx.AsyncClient, url: str, *, external_url: str = "",
                 username: str = "ragward", channel: str | None = None) -> None:
        self._client = client
        self._url = url
        self._external_url = external_url
        self._username = username
        self._channel = channel

    async def send(self, notification: Notification) -> None:
        body = payload(MessageData.of(notification, self._external_url),
                       username=self._username, channel=self._channel)
        await post_json(self._client, self._url, body, self.name)
