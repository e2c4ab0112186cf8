"""Alert state, notification log and silences, persisted in SQLite (``DATA_DIR/alerts.db``).

What a restart needs so it neither repeats nor forgets a notification:

* ``alerts`` — every pending, firing and recently resolved alert with its timers
  (``active_at`` for ``for``, ``fired_at``/``resolved_at`` for startsAt/endsAt,
  ``keep_firing_since``), written when they change;
* ``nflog`` — per group and receiver, the firing and resolved fingerprints last
  delivered and when (the dedupe and ``repeat_interval`` state);
* ``silences`` — shared with ``ragward alerts silence``, which writes the same file;
* ``notifications`` — an append-only history of delivery attempts, for
  ``ragward alerts state`` and post-mortems.

The database is small and written rarely (state changes, deliveries), so the
synchronous sqlite3 module in WAL mode is used directly from the event loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from alerting.engine import Alert
from alerting.grouping import NflogEntry, Notification
from alerting.silences import Matcher, Silence

#: how long the notification log, the delivery history and expired silences are kept
#: (Alertmanager's default ``--data.retention``, 120 h)
RETENTION_S = 5 * 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    fingerprint TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    active_at REAL NOT NULL,
    fired_at REAL,
    resolved_at REAL,
    keep_firing_since REAL,
    value REAL
);
CREATE TABLE IF NOT EXISTS nflog (
    group_key TEXT NOT NULL,
    receiver TEXT NOT NULL,
    firing TEXT NOT NULL,
    resolved TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (group_key, receiver)
);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    group_key TEXT NOT NULL,
    receiver TEXT NOT NULL,
    status TEXT NOT NULL,
    alerts INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
"""


def db_path(data_dir: Path) -> Path:
    return Path(data_dir) / "alerts.db"


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def open(self) -> StateStore:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> StateStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("state store is not open")
        return self._db

    # -- alerts ----------------------------------------------------------------
    def load_alerts(self) -> list[Alert]:
        rows = self.db.execute(
            "SELECT fingerprint, rule, state, labels, annotations, active_at, fired_at,"
            " resolved_at, keep_firing_since, value FROM alerts ORDER BY active_at"
        ).fetchall()
        return [
            Alert(rule=r[1], fingerprint=r[0], state=r[2], labels=json.loads(r[3]),
                  annotations=json.loads(r[4]), active_at=r[5], fired_at=r[6],
                  resolved_at=r[7], keep_firing_since=r[8], value=r[9])
            for r in rows
        ]

    def save_alerts(self, changed: Iterable[Alert], removed: Iterable[str] = ()) -> None:
        rows = [
            (a.fingerprint, a.rule, a.state, json.dumps(a.labels), json.dumps(a.annotations),
             a.active_at, a.fired_at, a.resolved_at, a.keep_firing_since, a.value)
            for a in changed
        ]
        gone = [(fp,) for fp in removed]
        if not rows and not gone:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM alerts WHERE fingerprint = ?", gone)
            db.executemany(
                "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    # -- notification log ------------------------------------------------------
    def load_nflog(self) -> list[NflogEntry]:
        rows = self.db.execute("SELECT group_key, receiver, firing, resolved, at FROM nflog")
        return [
            NflogEntry(r[0], r[1], frozenset(json.loads(r[2])), frozenset(json.loads(r[3])), r[4])
            for r in rows
        ]

    def record_notification(self, notification: Notification, outcome: str, at: float) -> None:
        """Log a delivery; a delivered (or skipped: nothing to send) one becomes the nflog entry."""
        entry = notification.entry
        with self._transaction() as db:
            if outcome in ("success", "skipped"):
                db.execute(
                    "INSERT OR REPLACE INTO nflog VALUES (?, ?, ?, ?, ?)",
                    (entry.group_key, entry.receiver, json.dumps(sorted(entry.firing)),
                     json.dumps(sorted(entry.resolved)), entry.at),
                )
            db.execute(
                "INSERT INTO notifications (at, group_key, receiver, status, alerts, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (at, entry.group_key, entry.receiver, notification.status,
                 len(notification.alerts), outcome),
            )

    def notifications(self, limit: int = 20) -> list[tuple[float, str, str, str, int, str]]:
        rows = self.db.execute(
            "SELECT at, group_key, receiver, status, alerts, outcome FROM notifications"
            " ORDER BY id DESC LIMIT ?", (limit,),
        )
        return [tuple(r) for r in rows]

    def prune(self, now: float, keep_s: float = RETENTION_S) -> None:
        """Forget log entries and expired silences older than ``keep_s``."""
        with self._transaction() as db:
            db.execute("DELETE FROM nflog WHERE at < ?", (now - keep_s,))
            db.execute("DELETE FROM notifications WHERE at < ?", (now - keep_s,))
            db.execute("DELETE FROM silences WHERE ends_at < ?", (now - keep_s,))

    # -- silences --------------------------------------------------------------
    def add_silence(self, silence: Silence) -> None:
        matchers = [[m.name, m.op, m.value] for m in silence.matchers]
        with self._transaction() as db:
            db.execute(
                "INSERT INTO silences VALUES (?, ?, ?, ?, ?, ?, ?)",
                (silence.id, json.dumps(matchers), silence.starts_at, silence.ends_at,
                 silence.created_by, silence.comment, silence.created_at),
            )

    def expire_silence(self, silence_id: str, now: float) -> bool:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?",
                (now, silence_id, now),
            )
            return cursor.rowcount > 0

    def silences(self, now: float | None = None) -> list[Silence]:
        """All silences, or with ``now`` those not yet ended (active or pending)."""
        query = ("SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at"
                 " FROM silences")
        params: tuple[float, ...] = ()
        if now is not None:
            query += " WHERE ends_at > ?"
            params = (now,)
        rows = self.db.execute(query + " ORDER BY starts_at", params).fetchall()
        return [
            Silence(r[0], tuple(Matcher.make(n, op, v) for n, op, v in json.loads(r[1])),
                    r[2], r[3], r[4], r[5], r[6])
            for r in rows
        ]

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
