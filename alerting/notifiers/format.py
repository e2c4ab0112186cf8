"""What Alertmanager's templates compute, shared by every receiver.

The *data* of a notification (Alertmanager's ``template.Data``): receiver,
status, alerts, group labels, the labels and annotations common to every alert,
external URL, group key. :func:`subject` is Alertmanager's ``__subject``
template, used as the Slack title and the email subject:
``[FIRING:2] HighErrorRate acme (page)``.

Nothing here escapes: the Slack notifier escapes for mrkdwn, the email
notifier for HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alerting.engine import Alert
from alerting.grouping import Notification

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time, which Alertmanager writes for an alert without an end."""


def rfc3339(ts: float | None, timespec: str = "milliseconds") -> str:
    """UTC with a ``Z``; Go's zero time for None (an alert without an end)."""
    if ts is None:
        return ZERO_TIME
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _common(maps: Sequence[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


@dataclass(frozen=True)
class MessageData:
    receiver: str
    status: str
    alerts: tuple[Alert, ...]
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    group_key: str

    @classmethod
    def of(cls, notification: Notification, external_url: str = "") -> MessageData:
        alerts = notification.alerts
        return cls(
            receiver=notification.receiver,
            status=notification.status,
            alerts=alerts,
            group_labels=dict(sorted(notification.group_labels.items())),
            common_labels=_common([a.labels for a in alerts]),
            common_annotations=_common([a.annotations for a in alerts]),
            external_url=external_url.rstrip("/"),
            group_key=notification.group_key,
        )

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "resolved"]


def subject(data: MessageData) -> str:
    """Alertmanager's ``__subject``: status (firing count), group values, other common values."""
    head = data.status.upper()
    if data.status == "firing":
        head += f":{len(data.firing)}"
    parts = [f"[{head}]", *data.group_labels.values()]
    extra = [v for k, v in data.common_labels.items() if k not in data.group_labels]
    if extra:
        parts.append("(" + " ".join(extra) + ")")
    return " ".join(part for part in parts if part)


def alert_status(alert: Alert) -> str:
    return "resolved" if alert.state == "resolved" else "firing"


def webhook_alert(alert: Alert, generator_url: str = "") -> dict[str, Any]:
    """One alert as Alertmanager's webhook (and API) shows it."""
    return {
        "status": alert_status(alert),
        "labels": dict(sorted(alert.labels.items())),
        "annotations": dict(sorted(alert.annotations.items())),
        "startsAt": rfc3339(alert.fired_at if alert.fired_at is not None else alert.active_at),
        "endsAt": rfc3339(alert.resolved_at if alert.state == "resolved" else None),
        "generatorURL": generator_url,
        "fingerprint": alert.fingerprint,
    }
