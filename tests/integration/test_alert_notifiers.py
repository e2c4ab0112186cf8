"""Notifiers against real local receivers: an aiohttp server (Slack, webhook) and aiosmtpd."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from alerting.engine import Alert, fingerprint
from alerting.grouping import NflogEntry, Notification
from alerting.notifiers import NotifyError, RetryPolicy, deliver
from alerting.notifiers.email import EmailNotifier, SmtpConfig
from alerting.notifiers.slack import SlackNotifier
from alerting.notifiers.webhook import WebhookNotifier
from tests import receivers
from tests.receivers import HttpReceiver, Reply, SmtpReceiver, free_port

http_receiver = receivers.http_receiver  # fixtures shared with other receiver tests
smtp_receiver = receivers.smtp_receiver

T0 = 1_700_000_000.0
FAST = RetryPolicy(attempts=4, base_delay_s=0.05, max_delay_s=0.2, deadline_s=10)


def _notification(receiver: str, state: str = "firing") -> Notification:
    labels = {"alertname": "HighErrorRate", "tenant": "acme", "severity": "page"}
    alert = Alert(rule="HighErrorRate", fingerprint=fingerprint(labels), labels=labels,
                  annotations={"summary": "error rate 0.5 for acme & <co>"},
                  state=state, active_at=T0, fired_at=T0,  # type: ignore[arg-type]
                  resolved_at=T0 + 60 if state == "resolved" else None)
    key = '{}:{alertname="HighErrorRate", tenant="acme"}'
    return Notification(receiver, key, {"alertname": "HighErrorRate", "tenant": "acme"},
                        "firing" if state == "firing" else "resolved", (alert,),
                        NflogEntry(key, receiver, frozenset(), frozenset(), T0))


@pytest.fixture
async def client() -> object:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def test_slack_429_retry_after_is_honoured(http_receiver: HttpReceiver,
                                                 client: httpx.AsyncClient) -> None:
    """Slack answering 429 with Retry-After: 1 is retried no sooner than 1 s later and succeeds."""
    http_receiver.script("/slack", Reply(429, "rate_limited", {"Retry-After": "1"}))
    notifier = SlackNotifier(client, http_receiver.url("/slack"))
    attempts = await deliver(notifier, _notification("slack"), FAST)
    first, second = http_receiver.at("/slack")
    assert attempts == 2
    assert second.at - first.at >= 0.95
    assert first.body == second.body
    attachment = second.json()["attachments"][0]
    assert attachment["title"] == "[FIRING:1] HighErrorRate acme (page)"
    assert "acme &amp; &lt;co&gt;" in attachment["text"]
    assert second.headers["Content-Type"] == "application/json"


async def test_webhook_posts_alertmanager_v4_and_retries_5xx(http_receiver: HttpReceiver,
                                                            client: httpx.AsyncClient) -> None:
    """A 503 then 200 is one delivery after a backoff; the body is Alertmanager's v4 JSON."""
    http_receiver.script("/hook", Reply(503, "busy"))
    notifier = WebhookNotifier(client, http_receiver.url("/hook"))
    assert await deliver(notifier, _notification("webhook", "resolved"), FAST) == 2
    body = http_receiver.bodies("/hook")[1]
    assert body["version"] == "4" and body["status"] == "resolved"
    assert body["alerts"][0]["status"] == "resolved"
    assert body["alerts"][0]["fingerprint"] == _notification("webhook").alerts[0].fingerprint


async def test_client_errors_are_not_retried(http_receiver: HttpReceiver,
                                             client: httpx.AsyncClient) -> None:
    """A 400/404 (bad webhook URL) fails at once: retrying cannot help."""
    http_receiver.script("/hook", Reply(404, "no_service"))
    with pytest.raises(NotifyError, match="404") as info:
        await deliver(WebhookNotifier(client, http_receiver.url("/hook")),
                      _notification("webhook"), FAST)
    assert not info.value.retriable
    assert len(http_receiver.at("/hook")) == 1


async def test_receiver_down_fails_retriably_without_leaking_the_url(
        client: httpx.AsyncClient) -> None:
    """Nothing listening: each attempt is a quick connection error; the URL's secret stays out."""
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/SECRETTOKEN"
    with pytest.raises(NotifyError) as info:
        await deliver(SlackNotifier(client, url), _notification("slack"), FAST)
    assert info.value.retriable and "SECRETTOKEN" not in str(info.value)


async def test_email_is_sent_with_auth(http_receiver: HttpReceiver) -> None:
    """SMTP with credentials from the URL: AUTH is used, one multipart message arrives."""
    smtp = SmtpReceiver(credentials=("alerts", "s3cret")).start()
    try:
        config = SmtpConfig.from_url(smtp.url("alerts", "s3cret"), starttls=False,
                                     sender="ragward@example.com", recipients=["ops@example.com"])
        await deliver(EmailNotifier(config), _notification("email"), FAST)
        [message] = await smtp.wait_for(1)
        assert smtp.logins == [("alerts", "s3cret")]
        assert smtp.envelopes == [("ragward@example.com", ["ops@example.com"])]
        assert message["Subject"] == "[FIRING:1] HighErrorRate acme (page)"
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "acme &amp; &lt;co&gt;" in html
    finally:
        smtp.stop()


async def test_email_wrong_password_is_a_permanent_failure() -> None:
    """A 535 from the relay is not retried."""
    smtp = SmtpReceiver(credentials=("alerts", "s3cret")).start()
    try:
        config = SmtpConfig.from_url(smtp.url("alerts", "wrong"), starttls=False,
                                     sender="a@example.com", recipients=["b@example.com"])
        with pytest.raises(NotifyError, match="535") as info:
            await deliver(EmailNotifier(config), _notification("email"), FAST)
        assert not info.value.retriable and smtp.count() == 0
    finally:
        smtp.stop()


async def test_email_over_starttls() -> None:
    """smtp_starttls=true upgrades the session (server requires it) and verifies the cert."""
    smtp = SmtpReceiver(starttls=True, credentials=("alerts", "s3cret")).start()
    try:
        config = SmtpConfig.from_url(smtp.url("alerts", "s3cret"), starttls=True,
                                     sender="a@example.com", recipients=["b@example.com"])
        await deliver(EmailNotifier(config, tls_context=smtp.client_context()),
                      _notification("email"), FAST)
        assert len(await smtp.wait_for(1)) == 1
        plain = SmtpConfig.from_url(smtp.url("alerts", "s3cret"), starttls=False,
                                    sender="a@example.com", recipients=["b@example.com"])
        with pytest.raises(NotifyError):
            await deliver(EmailNotifier(plain), _notification("email"), FAST)
        assert smtp.count() == 1
    finally:
        smtp.stop()


async def test_smtp_down_is_retriable(smtp_receiver: SmtpReceiver) -> None:
    """No relay listening is a retriable failure, reported quickly."""
    config = SmtpConfig.from_url(f"smtp://127.0.0.1:{free_port()}", starttls=False,
                                 sender="a@example.com", recipients=["b@example.com"],
                                 timeout_s=2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(NotifyError) as info:
        await deliver(EmailNotifier(config), _notification("email"), FAST)
    assert info.value.retriable
    assert asyncio.get_running_loop().time() - started < 5
