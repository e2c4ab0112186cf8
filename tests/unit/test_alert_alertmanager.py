"""The Alertmanager receiver's body (v2 ``postableAlert``) and what it decides to post when."""

from __future__ import annotations

import pytest

from alerting.engine import Alert, fingerprint
from alerting.notifiers.alertmanager import VALIDITY_FACTOR, Forwarding, payload
from alerting.silences import Matcher, Silence
from ragward.errors import ConfigError
from ragward.settings import load_settings

T0 = 1_700_000_000.0
RESEND = 60.0


def _alert(tenant: str, state: str = "firing") -> Alert:
    labels = {"alertname": "HighErrorRate", "tenant": tenant, "severity": "page"}
    return Alert(rule="HighErrorRate", fingerprint=fingerprint(labels), labels=labels,
                 annotations={"summary": f"error rate 0.5 for {tenant}"},
                 state=state,  # type: ignore[arg-type]
                 active_at=T0 - 30, fired_at=T0,
                 resolved_at=T0 + 60 if state == "resolved" else None)


def test_firing_alert_is_valid_for_four_resend_intervals() -> None:
    """A firing alert: its labels and annotations, startsAt = when it fired, endsAt = now + 4 x
    resend (Alertmanager resolves it by itself if ragward stops re-posting), generatorURL; no
    other field (the postableAlert schema has no more)."""
    [body] = payload([_alert("acme")], now=T0 + 10, valid_for_s=VALIDITY_FACTOR * RESEND,
                     generator_url="https://alerts.example/api/alerts")
    assert body == {
        "labels": {"alertname": "HighErrorRate", "severity": "page", "tenant": "acme"},
        "annotations": {"summary": "error rate 0.5 for acme"},
        "startsAt": "2023-11-14T22:13:20.000Z",
        "endsAt": "2023-11-14T22:17:30.000Z",
        "generatorURL": "https://alerts.example/api/alerts",
    }


def test_resolved_alert_ends_when_it_resolved_and_no_generator_url_is_left_out() -> None:
    """Resolved: endsAt is the resolution time, not now; without an external URL the optional
    generatorURL is left out rather than sent empty."""
    [body] = payload([_alert("acme", "resolved")], now=T0 + 500, valid_for_s=240)
    assert body["endsAt"] == "2023-11-14T22:14:20.000Z"
    assert "generatorURL" not in body


def test_forwarding_posts_new_changed_and_stale_alerts_only() -> None:
    """Prometheus's needsSending: a new firing alert is due at once; not again until resend_s
    has passed; a resolution is due at once and only once; pending alerts never."""
    forwarding = Forwarding(RESEND)
    firing, other = _alert("acme"), _alert("globex")
    pending = _alert("initech")
    pending.state = "pending"
    assert forwarding.due([firing, pending], T0) == [firing]
    forwarding.posted([firing], T0)
    assert forwarding.due([firing], T0 + 5) == []
    assert forwarding.due([firing, other], T0 + 10) == [other]
    forwarding.posted([other], T0 + 10)
    assert forwarding.due([firing, other], T0 + RESEND) == [firing]      # resend
    forwarding.posted([firing], T0 + RESEND)
    resolved = _alert("acme", "resolved")
    assert forwarding.due([resolved, other], T0 + RESEND + 1) == [resolved]
    forwarding.posted([resolved], T0 + RESEND + 1)
    assert forwarding.due([resolved, other], T0 + 3 * RESEND) == [other]  # resolved: once


def test_forwarding_holds_back_silenced_firing_alerts_and_forgets_dropped_ones() -> None:
    """ragward's own silences hold a firing alert back (as from every receiver); an alert the
    engine dropped is forgotten, so the same label set firing later is posted again."""
    forwarding = Forwarding(RESEND)
    alert = _alert("acme")
    silence = Silence(id="s1", matchers=(Matcher.parse('tenant="acme"'),), starts_at=T0 - 1,
                      ends_at=T0 + 100, created_by="ops", comment="maintenance")
    assert forwarding.due([alert], T0, [silence]) == []
    assert forwarding.due([alert], T0 + 101, [silence]) == [alert]
    forwarding.posted([alert], T0 + 101)
    assert forwarding.due([], T0 + 102) == []
    assert forwarding.due([alert], T0 + 103) == [alert]


@pytest.mark.parametrize("url", ["ftp://user:hunter2@am.example", "hunter2", "http://:9093",
                                 "http://user:hunter2@am.example/?token=x"])
def test_bad_alertmanager_url_stops_start_up_without_repeating_it(url: str) -> None:
    """RAGWARD_ALERTMANAGER_URL must be an http(s) base URL; the error names the variable
    and never repeats the value (it may carry a password)."""
    with pytest.raises(ConfigError) as raised:
        load_settings(alertmanager_url=url)
    assert "RAGWARD_ALERTMANAGER_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)
