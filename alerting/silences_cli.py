"""``ragward alerts silence|silences|state``: silences and alert state from the command line.

They read and write the alert state store (``RAGWARD_DATA_DIR/alerts.db``), the
same file the alert service uses, so a silence added here applies to a service
running on that data directory at its next evaluation.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from alerting.clock import SystemClock
from alerting.rules import parse_duration
from alerting.silences import Matcher, Silence
from alerting.state_store import StateStore, db_path
from alerting.templates import format_value
from ragward.settings import Settings


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def add(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward alerts silence MATCHER... [--duration 1h] [--comment C] [--author A]``."""
    try:
        matchers = [Matcher.parse(text) for text in args.matchers]
        duration = parse_duration(args.duration)
        if duration <= 0:
            raise ValueError("--duration must be longer than 0s")
        now = SystemClock().now()
        silence = Silence.create(matchers, now, now + duration, created_by=args.author,
                                 comment=args.comment, now=now)
    except ValueError as exc:
        print(f"ragward: {exc}", file=sys.stderr)
        return 2
    with StateStore(db_path(settings.data_dir)) as store:
        store.add_silence(silence)
    print(f"silence {silence.id} added: {' '.join(str(m) for m in silence.matchers)}"
          f" until {_when(silence.ends_at)}")
    return 0


def list_(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward alerts silences``: silences not yet ended."""
    now = SystemClock().now()
    with StateStore(db_path(settings.data_dir)) as store:
        silences = store.silences(now)
    rows = [[s.id, " ".join(str(m) for m in s.matchers), _when(s.starts_at), _when(s.ends_at),
             s.created_by, s.comment] for s in silences]
    print(_table(["ID", "MATCHERS", "STARTS", "ENDS", "BY", "COMMENT"], rows))
    return 0


def state(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward alerts state``: pending, firing and recently resolved alerts, last deliveries."""
    with StateStore(db_path(settings.data_dir)) as store:
        alerts = store.load_alerts()
        notifications = store.notifications(limit=10)
    order = {"firing": 0, "pending": 1, "resolved": 2}
    alerts.sort(key=lambda a: (order.get(a.state, 3), a.alertname, a.fingerprint))
    rows = []
    for alert in alerts:
        since = {"pending": alert.active_at, "firing": alert.fired_at,
                 "resolved": alert.resolved_at}.get(alert.state)
        labels = ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items())
                          if k != "alertname")
        rows.append([alert.alertname, alert.state, _when(since), format_value(alert.value),
                     labels])
    print(_table(["ALERT", "STATE", "SINCE", "VALUE", "LABELS"], rows))
    if notifications:
        print()
        print(_table(["NOTIFIED", "RECEIVER", "STATUS", "ALERTS", "OUTCOME", "GROUP"],
                     [[_when(at), receiver, status, str(count), outcome, group]
                      for at, group, receiver, status, count, outcome in notifications]))
    return 0
