"""Notification bodies in Alertmanager's formats, escaping, and the retry policy."""

from __future__ import annotations

import random

import pytest

from alerting.engine import Alert, fingerprint
from alerting.grouping import NflogEntry, Notification
from alerting.notifiers import NotifyError, RetryPolicy, deliver, parse_retry_after, slack, webhook
from alerting.notifiers import email as email_notifier
from alerting.notifiers.format import MessageData, subject

T0 = 1_700_000_000.0


def _alert(tenant: str, state: str = "firing", route: str = "/v1/query") -> Alert:
    labels = {"alertname": "HighErrorRate", "tenant": tenant, "severity": "page", "route": route}
    return Alert(rule="HighErrorRate", fingerprint=fingerprint(labels), labels=labels,
                 annotations={"summary": f"error rate 0.5 for {tenant}"},
                 state=state,  # type: ignore[arg-type]
                 active_at=T0 - 30, fired_at=T0,
                 resolved_at=T0 + 60 if state == "resolved" else None)


def _notification(*alerts: Alert, receiver: str = "slack") -> Notification:
    status = "firing" if any(a.state == "firing" for a in alerts) else "resolved"
    group = {"alertname": "HighErrorRate", "tenant": alerts[0].labels["tenant"]}
    key = '{}:{alertname="HighErrorRate", tenant="' + group["tenant"] + '"}'
    return Notification(receiver, key, group, status, alerts,  # type: ignore[arg-type]
                        NflogEntry(key, receiver, frozenset(), frozenset(), T0))


def test_subject_is_alertmanagers() -> None:
    """[FIRING:N] group values (other common label values); [RESOLVED] without a count."""
    data = MessageData.of(_notification(_alert("acme"), _alert("acme", route="/v1/query/batch")))
    assert subject(data) == "[FIRING:2] HighErrorRate acme (page)"
    data = MessageData.of(_notification(_alert("acme", "resolved")))
    assert subject(data) == "[RESOLVED] HighErrorRate acme (/v1/query page)"


def test_webhook_payload_is_version_4() -> None:
    """The body has every field of Alertmanager's webhook (version 4), with RFC 3339 times."""
    note = _notification(_alert("acme"), _alert("acme", "resolved", route="/b"), receiver="webhook")
    body = webhook.payload(MessageData.of(note, "http://ragward.example/"))
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver",
                         "groupLabels", "commonLabels", "commonAnnotations", "externalURL",
                         "alerts"}
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "webhook"
    assert body["groupKey"] == '{}:{alertname="HighErrorRate", tenant="acme"}'
    assert body["externalURL"] == "http://ragward.example"
    assert body["commonLabels"] == {"alertname": "HighErrorRate", "severity": "page",
                                    "tenant": "acme"}
    firing, resolved = body["alerts"]
    assert set(firing) == {"status", "labels", "annotations", "startsAt", "endsAt",
                           "generatorURL", "fingerprint"}
    assert firing["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert firing["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["status"] == "resolved" and resolved["endsAt"] == "2023-11-14T22:14:20.000Z"
    truncated = webhook.payload(MessageData.of(note), max_alerts=1)
    assert truncated["truncatedAlerts"] == 1 and len(truncated["alerts"]) == 1


def test_slack_attachment_format_and_mrkdwn_escaping() -> None:
    """Title [FIRING:N] ..., colour danger/good, fields, text; &, <, > escaped everywhere."""
    hostile = _alert("<!channel> & <http://evil|click>")
    body = slack.payload(MessageData.of(_notification(hostile)))
    [attachment] = body["attachments"]
    assert attachment["color"] == "danger"
    assert attachment["title"].startswith("[FIRING:1] HighErrorRate &lt;!channel&gt; &amp; ")
    text = attachment["text"]
    assert "<!channel>" not in text and "<http://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;" in text
    assert "*Alert:* error rate 0.5 for &lt;!channel&gt;" in text and "`page`" in text
    assert {"title": "severity", "value": "page", "short": True} in attachment["fields"]
    assert attachment["mrkdwn_in"] == ["fallback", "pretext", "text"]
    resolved = slack.payload(MessageData.of(_notification(_alert("acme", "resolved"))))
    assert resolved["attachments"][0]["color"] == "good"
    assert resolved["attachments"][0]["title"].startswith("[RESOLVED] HighErrorRate acme")


def test_email_is_multipart_text_and_escaped_html() -> None:
    """Subject like Alertmanager's; text/plain + text/html parts; labels HTML-escaped."""
    config = email_notifier.SmtpConfig.from_url(
        "smtp://u%40x:p%3Ass@mail.example:2525", starttls=True, sender="ragward@x",
        recipients=["ops@x", "dev@x"])
    assert (config.host, config.port, config.username, config.password, config.start_tls) == (
        "mail.example", 2525, "u@x", "p:ss", True)
    message = email_notifier.build_message(
        MessageData.of(_notification(_alert("<script>alert(1)</script>"), receiver="email")),
        config)
    assert message["Subject"].startswith("[FIRING:1] HighErrorRate <script>")
    assert message["To"] == "ops@x, dev@x"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>alert(1)</script>" in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_smtp_url_errors_name_the_variable_not_the_secret() -> None:
    """A bad SMTP URL is refused naming RAGWARD_SMTP_URL, never echoing the password."""
    from ragward.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        email_notifier.SmtpConfig.from_url("http://u:hunter2@x", starttls=False, sender="a",
                                           recipients=["b"])
    assert "RAGWARD_SMTP_URL" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="RAGWARD_ALERT_EMAIL_TO"):
        email_notifier.SmtpConfig.from_url("smtp://x", starttls=False, sender="a", recipients=[])


def test_retry_after_parsing() -> None:
    """Delta-seconds and HTTP dates (relative to Date) are understood; junk is ignored."""
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT",
                              "date": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


class _Flaky:
    """A notifier (our own interface) that fails with scripted errors, then succeeds."""

    name = "flaky"

    def __init__(self, *errors: NotifyError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def send(self, notification: Notification) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


async def test_deliver_backs_off_exponentially_with_jitter_and_honours_retry_after() -> None:
    """Retriable errors wait base*2^n with equal jitter; Retry-After replaces the backoff."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    flaky = _Flaky(NotifyError("500", retriable=True), NotifyError("500", retriable=True),
                   NotifyError("429", retriable=True, retry_after=7),
                   NotifyError("503", retriable=True))
    policy = RetryPolicy(attempts=5, base_delay_s=1.0, max_delay_s=3.0, deadline_s=100)
    attempts = await deliver(flaky, _notification(_alert("a")), policy, sleep=sleep,
                             monotonic=lambda: 0.0, rng=random.Random(1))
    assert attempts == 5
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and waits[2] == 7
    assert 1.5 <= waits[3] <= 3.0  # capped at max_delay_s


async def test_deliver_gives_up_on_permanent_errors_attempts_and_deadline() -> None:
    """4xx stops at once; retries stop after `attempts` or when the deadline would pass."""

    async def sleep(seconds: float) -> None:
        return None

    permanent = _Flaky(NotifyError("400", retriable=False))
    with pytest.raises(NotifyError, match="400"):
        await deliver(permanent, _notification(_alert("a")), RetryPolicy(), sleep=sleep)
    assert permanent.calls == 1
    down = _Flaky(*[NotifyError("down", retriable=True)] * 10)
    with pytest.raises(NotifyError):
        await deliver(down, _notification(_alert("a")), RetryPolicy(attempts=3), sleep=sleep)
    assert down.calls == 3
    slow = _Flaky(NotifyError("429", retriable=True, retry_after=600))
    with pytest.raises(NotifyError, match="429"):
        await deliver(slow, _notification(_alert("a")), RetryPolicy(deadline_s=60), sleep=sleep)
    assert slow.calls == 1
