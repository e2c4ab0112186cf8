"""Grouping and dedupe: Alertmanager's group_wait / group_interval / repeat_interval rules."""

from __future__ import annotations

from alerting.engine import Alert, fingerprint
from alerting.grouping import Dispatcher, Notification, group_key
from alerting.rules import Routing
from alerting.silences import Matcher, Silence

T0 = 1_700_000_000.0
ROUTING = Routing(group_by=("alertname", "tenant"), group_wait_s=10, group_interval_s=60,
                  repeat_interval_s=3600, receivers=("slack", "email"), send_resolved=True)


def _alert(tenant: str, state: str = "firing", name: str = "HighErrorRate",
           route: str = "/v1/query") -> Alert:
    labels = {"alertname": name, "tenant": tenant, "route": route, "severity": "page"}
    return Alert(rule=name, fingerprint=fingerprint(labels), labels=labels, annotations={},
                 state=state, active_at=T0, fired_at=T0,  # type: ignore[arg-type]
                 resolved_at=T0 + 100 if state == "resolved" else None)


def _deliver(dispatcher: Dispatcher, notes: list[Notification]) -> list[tuple[str, str, int]]:
    for note in notes:
        dispatcher.done(note, delivered=True)
    return sorted((n.receiver, n.status, len(n.alerts)) for n in notes)


def test_group_key_is_alertmanagers_form() -> None:
    """Group keys look like Alertmanager's so webhook receivers can dedupe on them."""
    assert group_key({"tenant": "acme", "alertname": "X"}) == '{}:{alertname="X", tenant="acme"}'


def test_group_wait_then_dedupe_then_repeat_interval() -> None:
    """First notification after group_wait; unchanged groups repeat only after repeat_interval."""
    d = Dispatcher(ROUTING, ROUTING.receivers)
    d.update([_alert("acme")], T0)
    assert d.due(T0 + 9) == []
    first = d.due(T0 + 10)
    assert _deliver(d, first) == [("email", "firing", 1), ("slack", "firing", 1)]
    assert first[0].group_labels == {"alertname": "HighErrorRate", "tenant": "acme"}
    for minute in range(1, 60):
        d.update([_alert("acme")], T0 + 10 + 60 * minute)
        assert d.due(T0 + 10 + 60 * minute) == [], minute
    d.update([_alert("acme")], T0 + 10 + 3600)
    assert _deliver(d, d.due(T0 + 10 + 3600)) == [("email", "firing", 1), ("slack", "firing", 1)]


def test_new_alert_in_group_waits_for_group_interval() -> None:
    """A second alert joining a flushed group is sent at the next group_interval, both together."""
    d = Dispatcher(ROUTING, ("slack",))
    d.update([_alert("acme")], T0)
    _deliver(d, d.due(T0 + 10))
    d.update([_alert("acme"), _alert("acme", route="/v1/query/batch")], T0 + 20)
    assert d.due(T0 + 20) == []
    notes = d.due(T0 + 70)
    assert _deliver(d, notes) == [("slack", "firing", 2)]


def test_resolved_notification_once_then_silence() -> None:
    """Recovery sends one RESOLVED per receiver, never again afterwards."""
    d = Dispatcher(ROUTING, ROUTING.receivers)
    d.update([_alert("acme")], T0)
    _deliver(d, d.due(T0 + 10))
    d.update([_alert("acme", "resolved")], T0 + 30)
    notes = d.due(T0 + 70)
    assert _deliver(d, notes) == [("email", "resolved", 1), ("slack", "resolved", 1)]
    assert notes[0].alerts[0].state == "resolved"
    for step in range(2, 20):
        d.update([_alert("acme", "resolved")], T0 + 10 + 60 * step)
        assert d.due(T0 + 10 + 60 * step) == []


def test_fired_and_resolved_between_flushes_sends_nothing() -> None:
    """An alert that resolves before its group is ever flushed is never notified."""
    d = Dispatcher(ROUTING, ("slack",))
    d.update([_alert("acme", "resolved")], T0)
    assert d.due(T0 + 10) == []


def test_send_resolved_false_records_without_sending_alerts() -> None:
    """With send_resolved off the resolve produces an empty notification (log-only)."""
    routing = Routing(**{**ROUTING.__dict__, "send_resolved": False})
    d = Dispatcher(routing, ("slack",))
    d.update([_alert("acme")], T0)
    _deliver(d, d.due(T0 + 10))
    d.update([_alert("acme", "resolved")], T0 + 30)
    notes = d.due(T0 + 70)
    assert len(notes) == 1 and notes[0].alerts == () and notes[0].status == "resolved"
    d.done(notes[0], delivered=True)
    entry = d.nflog(notes[0].group_key, "slack")
    assert entry is not None and entry.firing == frozenset()


def test_failed_delivery_is_retried_at_next_flush_and_in_flight_is_not_doubled() -> None:
    """The log changes only on delivery: a failure is retried next group_interval; a slot
    still in flight is not notified twice."""
    d = Dispatcher(ROUTING, ("slack",))
    d.update([_alert("acme")], T0)
    notes = d.due(T0 + 10)
    assert len(notes) == 1
    assert d.due(T0 + 70) == []          # still in flight
    d.done(notes[0], delivered=False)
    assert len(d.due(T0 + 130)) == 1     # failed: tried again


def test_silenced_alerts_are_not_notified_until_the_silence_ends() -> None:
    """A silence matching the alert holds back notifications; when it ends the alert is sent."""
    d = Dispatcher(ROUTING, ("slack",))
    silence = Silence.create([Matcher.parse("tenant=acme")], T0, T0 + 300, now=T0)
    d.update([_alert("acme"), _alert("globex")], T0)
    notes = d.due(T0 + 10, [silence])
    assert [n.group_labels["tenant"] for n in notes] == ["globex"]
    _deliver(d, notes)
    assert d.due(T0 + 70, [silence]) == []
    notes = d.due(T0 + 310, [silence])
    assert [n.group_labels["tenant"] for n in notes] == ["acme"]


def test_nflog_survives_a_new_dispatcher() -> None:
    """A dispatcher built from a saved notification log does not repeat a notification."""
    d = Dispatcher(ROUTING, ("slack",))
    d.update([_alert("acme")], T0)
    notes = d.due(T0 + 10)
    _deliver(d, notes)
    restarted = Dispatcher(ROUTING, ("slack",), [notes[0].entry])
    restarted.update([_alert("acme")], T0 + 100)
    assert restarted.due(T0 + 110) == []
    restarted.update([_alert("acme", "resolved")], T0 + 120)
    assert [n.status for n in restarted.due(T0 + 170)] == ["resolved"]


def test_groups_follow_group_by() -> None:
    """Alerts with the same group_by values share one notification."""
    routing = Routing(**{**ROUTING.__dict__, "group_by": ("alertname",)})
    d = Dispatcher(routing, ("slack",))
    d.update([_alert("acme"), _alert("globex"), _alert("acme", name="Other")], T0)
    notes = d.due(T0 + 10)
    assert sorted((n.group_key, len(n.alerts)) for n in notes) == [
        ('{}:{alertname="HighErrorRate"}', 2), ('{}:{alertname="Other"}', 1)]


def test_resolve_while_silenced_still_closes_the_incident() -> None:
    """An alert notified as firing, then silenced, then resolved: the RESOLVED is sent."""
    d = Dispatcher(ROUTING, ("slack",))
    d.update([_alert("acme")], T0)
    _deliver(d, d.due(T0 + 10))
    silence = Silence.create([Matcher.parse("tenant=acme")], T0 + 20, T0 + 3600, now=T0)
    d.update([_alert("acme")], T0 + 70)
    assert d.due(T0 + 70, [silence]) == []
    d.update([_alert("acme", "resolved")], T0 + 100)
    assert [n.status for n in d.due(T0 + 130, [silence])] == ["resolved"]


def test_notification_log_forgets_entries_past_retention() -> None:
    """The in-memory notification log stays bounded as groups come and go: entries last
    written before the cut-off are dropped (the store prunes the same rows), newer and
    in-flight ones stay, and a dropped group that fires again is notified afresh."""
    d = Dispatcher(ROUTING, ("slack",))
    for i in range(500):  # 500 tenants, each alerting once, an hour apart
        at = T0 + 3600 * i
        d.update([_alert(f"t{i}")], at)
        _deliver(d, d.due(at + 10))
    d.update([_alert("late")], T0 + 3600 * 500)
    in_flight = d.due(T0 + 3600 * 500 + 10)  # not done yet
    cut = T0 + 3600 * 400
    assert d.forget(cut) == 400
    assert d.nflog(group_key({"alertname": "HighErrorRate", "tenant": "t0"}), "slack") is None
    assert d.nflog(group_key({"alertname": "HighErrorRate", "tenant": "t499"}), "slack")
    assert len(d._nflog) == 100
    _deliver(d, in_flight)
    d.update([_alert("t0")], T0 + 3600 * 501)
    assert _deliver(d, d.due(T0 + 3600 * 501 + 10)) == [("slack", "firing", 1)]
