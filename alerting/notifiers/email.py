"""Email over SMTP (aiosmtplib): multipart text + HTML, Alertmanager's subject.

``RAGWARD_SMTP_URL`` is ``smtp://user:pass@host:port`` (plain, or STARTTLS with
``RAGWARD_SMTP_STARTTLS=true``) or ``smtps://…`` (TLS from the first byte).
Credentials may be percent-encoded. Certificates are verified; a custom
``ssl.SSLContext`` can be passed for a private CA. Every label and annotation
is HTML-escaped in the HTML part. SMTP keeps no pooled connection: one session
per notification is how mail relays expect to be used.
"""

from __future__ import annotations

import html
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib

from alerting.engine import Alert
from alerting.grouping import Notification
from alerting.notifiers import NotifyError
from alerting.notifiers.format import MessageData, rfc3339, subject
from ragward.errors import ConfigError


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool = False
    timeout_s: float = 15.0

    @classmethod
    def from_url(cls, url: str, *, starttls: bool, sender: str, recipients: list[str],
                 timeout_s: float = 15.0) -> SmtpConfig:
        """Parse ``smtp[s]://user:pass@host:port``; errors name the variable, never the secret."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                "RAGWARD_SMTP_URL: expected smtp://user:pass@host:port or smtps://...")
        if not recipients:
            raise ConfigError(
                "RAGWARD_ALERT_EMAIL_TO: set at least one address with RAGWARD_SMTP_URL")
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
        except ValueError:
            raise ConfigError("RAGWARD_SMTP_URL: the port is not a number") from None
        return cls(
            host=parts.hostname,
            port=port,
            sender=sender,
            recipients=tuple(recipients),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=starttls and parts.scheme == "smtp",
            timeout_s=timeout_s,
        )


def _labels_text(alert: Alert) -> list[str]:
    return [f"  {k} = {v}" for k, v in sorted(alert.labels.items())]


def text_body(data: MessageData) -> str:
    lines = [subject(data), ""]
    for title, alerts in (("Firing", data.firing), ("Resolved", data.resolved)):
        if not alerts:
            continue
        lines.append(f"{title} ({len(alerts)}):")
        for alert in alerts:
            lines.append(f"- {alert.annotations.get('summary') or alert.labels.get('alertname')}")
            lines.append(f"  started {rfc3339(alert.fired_at or alert.active_at)}"
                         + (f", resolved {rfc3339(alert.resolved_at)}"
                            if alert.state == "resolved" else ""))
            lines.append("  Labels:")
            lines.extend("  " + line for line in _labels_text(alert))
            others = {k: v for k, v in alert.annotations.items() if k != "summary"}
            if others:
                lines.append("  Annotations:")
                lines.extend(f"    {k} = {v}" for k, v in sorted(others.items()))
        lines.append("")
    if data.external_url:
        lines.append(f"Sent by ragward: {data.external_url}")
    return "\n".join(lines)


def html_body(data: MessageData) -> str:
    esc = html.escape
    colour = "#e01e5a" if data.status == "firing" else "#2eb67d"
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>' + esc(subject(data)) + "</title></head>",
        '<body style="font-family: sans-serif">',
        f'<h2 style="color: {colour}">{esc(subject(data))}</h2>',
    ]
    for title, alerts in (("Firing", data.firing), ("Resolved", data.resolved)):
        if not alerts:
            continue
        out.append(f"<h3>{title} ({len(alerts)})</h3>")
        for alert in alerts:
            summary = alert.annotations.get("summary") or alert.labels.get("alertname", "")
            out.append(f"<p><strong>{esc(summary)}</strong><br>")
            out.append(f"Started {esc(rfc3339(alert.fired_at or alert.active_at))}")
            if alert.state == "resolved":
                out.append(f", resolved {esc(rfc3339(alert.resolved_at))}")
            out.append("</p><table>")
            out.extend(
                f"<tr><td>{esc(k)}</td><td><code>{esc(v)}</code></td></tr>"
                for k, v in sorted(alert.labels.items())
            )
            out.extend(
                f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>"
                for k, v in sorted(alert.annotations.items()) if k != "summary"
            )
            out.append("</table>")
    if data.external_url:
        out.append(f'<p><a href="{esc(data.external_url)}">ragward</a></p>')
    out.append("</body></html>")
    return "\n".join(out)


def build_message(data: MessageData, config: SmtpConfig) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(data)
    message["From"] = config.sender
    message["To"] = ", ".join(config.recipients)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="ragward")
    message.set_content(text_body(data))
    message.add_alternative(html_body(data), subtype="html")
    return message


class EmailNotifier:
    name = "email"

    def __init__(self, config: SmtpConfig, *, external_url: str = "",
                 tls_context: ssl.SSLContext | None = None) -> None:
        self._config = config
        self._external_url = external_url
        self._tls_context = tls_context

    async def send(self, notification: Notification) -> None:
        config = self._config
        message = build_message(MessageData.of(notification, self._external_url), config)
        try:
            await aiosmtplib.send(
                message,
                sender=config.sender,
                recipients=list(config.recipients),
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.use_tls,
                start_tls=config.start_tls,
                tls_context=self._tls_context,
                timeout=config.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx: try again later; 5xx: the relay refuses this message for good.
            raise NotifyError(f"email refused: {exc.code} {exc.message}",
                              retriable=400 <= exc.code < 500) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            retriable = all(400 <= r.code < 500 for r in exc.recipients)
            raise NotifyError("email recipients refused", retriable=retriable) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise NotifyError(f"email relay unreachable ({type(exc).__name__})",
                              retriable=True) from None
        except aiosmtplib.SMTPException as exc:
            raise NotifyError(f"email failed ({type(exc).__name__}: {exc})",
                              retriable=False) from None
