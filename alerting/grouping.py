"""Alertmanager-like routing: group alerts, decide when each receiver is notified.

One route for all rules (``routing`` in the rules file). Alerts sharing the
values of ``group_by`` form a group; a new group is flushed ``group_wait`` after
its first alert, then every ``group_interval``. At each flush every receiver is
considered on its own, against the *notification log* (what that receiver was
last told about the group and when), with Alertmanager's dedupe rule:

* never notified → notify if something fires;
* a firing alert the receiver has not been told about → notify;
* nothing fires any more but the receiver last heard of firing alerts → notify
  (the resolved message; recorded even with ``send_resolved: false``, silently);
* a resolved alert the receiver has not been told about (``send_resolved``) → notify;
* otherwise only once ``repeat_interval`` has passed since the last notification.

Silenced firing alerts are left out before that decision (a fully silenced group
sends nothing). The log is updated only after a delivery succeeds, so a failed
notification is tried again at the next flush, and a restarted service that
loads the log from the state store does not repeat what was already sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from alerting.engine import Alert
from alerting.rules import Routing
from alerting.silences import Silence, muted_by


@dataclass(frozen=True)
class NflogEntry:
    """What ``receiver`` was last told about ``group_key``, and when."""

    group_key: str
    receiver: str
    firing: frozenset[str]
    resolved: frozenset[str]
    at: float


@dataclass(frozen=True)
class Notification:
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    status: Literal["firing", "resolved"]
    alerts: tuple[Alert, ...]
    """Firing alerts first, then resolved ones (when the route sends resolved)."""
    entry: NflogEntry
    """The log entry to record once this notification is delivered."""

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "resolved"]


def group_key(group_labels: dict[str, str]) -> str:
    """Alertmanager's form: ``{}:{alertname="X", tenant="acme"}``."""
    pairs = ", ".join(f'{name}="{group_labels[name]}"' for name in sorted(group_labels))
    return "{}:{" + pairs + "}"


@dataclass
class _Group:
    key: str
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)


def needs_update(entry: NflogEntry | None, firing: frozenset[str], resolved: frozenset[str],
                 *, send_resolved: bool, repeat_interval_s: float, now: float) -> bool:
    """Alertmanager's DedupStage decision for one receiver and one group."""
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return entry.at <= now - repeat_interval_s


class Dispatcher:
    def __init__(self, routing: Routing, receivers: Sequence[str],
                 nflog: Iterable[NflogEntry] = ()) -> None:
        self.routing = routing
        self.receivers = tuple(receivers)
        self._groups: dict[str, _Group] = {}
        self._nflog: dict[tuple[str, str], NflogEntry] = {
            (e.group_key, e.receiver): e for e in nflog
        }
        self._in_flight: set[tuple[str, str]] = set()

    def groups(self) -> dict[str, list[Alert]]:
        return {key: list(group.alerts.values()) for key, group in self._groups.items()}

    def nflog(self, group_key: str, receiver: str) -> NflogEntry | None:
        return self._nflog.get((group_key, receiver))

    def update(self, alerts: Iterable[Alert], now: float) -> None:
        """Replace the grouped alerts with the engine's current firing and resolved ones."""
        regrouped: dict[str, dict[str, Alert]] = {}
        labels_of: dict[str, dict[str, str]] = {}
        for alert in alerts:
            if alert.state == "pending":
                continue
            labels = {n: alert.labels[n] for n in self.routing.group_by if n in alert.labels}
            key = group_key(labels)
            labels_of[key] = labels
            regrouped.setdefault(key, {})[alert.fingerprint] = alert
        for key in list(self._groups):
            if key not in regrouped:
                del self._groups[key]
        for key, members in regrouped.items():
            group = self._groups.get(key)
            if group is None:
                group = _Group(key, labels_of[key], now + self.routing.group_wait_s)
                self._groups[key] = group
            group.alerts = members

    def due(self, now: float, silences: Sequence[Silence] = ()) -> list[Notification]:
        """Notifications to send at ``now``; each is marked in flight until :meth:`done`."""
        out: list[Notification] = []
        for group in self._groups.values():
            if group.next_flush > now:
                continue
            group.next_flush = now + self.routing.group_interval_s
            firing = [a for a in group.alerts.values()
                      if a.state == "firing" and not muted_by(silences, a.labels, now)]
            resolved = [a for a in group.alerts.values() if a.state == "resolved"]
            if not firing and not resolved:
                continue
            firing.sort(key=lambda a: (a.fired_at or 0.0, a.fingerprint))
            resolved.sort(key=lambda a: (a.resolved_at or 0.0, a.fingerprint))
            firing_fps = frozenset(a.fingerprint for a in firing)
            resolved_fps = frozenset(a.fingerprint for a in resolved)
            sent = tuple(firing + (resolved if self.routing.send_resolved else []))
            for receiver in self.receivers:
                slot = (group.key, receiver)
                if slot in self._in_flight:
                    continue
                if not needs_update(self._nflog.get(slot), firing_fps, resolved_fps,
                                    send_resolved=self.routing.send_resolved,
                                    repeat_interval_s=self.routing.repeat_interval_s, now=now):
                    continue
                entry = NflogEntry(group.key, receiver, firing_fps, resolved_fps, now)
                self._in_flight.add(slot)
                out.append(Notification(
                    receiver=receiver, group_key=group.key, group_labels=dict(group.labels),
                    status="firing" if firing else "resolved", alerts=sent, entry=entry,
                ))
        return out

    def forget(self, before: float) -> int:
        """Drop notification-log entries last written before ``before`` (the store's
        retention), so the log stays bounded as groups come and go; returns how many."""
        stale = [slot for slot, entry in self._nflog.items()
                 if entry.at < before and slot not in self._in_flight]
        for slot in stale:
            del self._nflog[slot]
        return len(stale)

    def done(self, notification: Notification, delivered: bool) -> None:
        """Release the slot; on delivery (or nothing to deliver) record it in the log."""
        slot = (notification.group_key, notification.receiver)
        self._in_flight.discard(slot)
        if delivered:
            self._nflog[slot] = notification.entry
