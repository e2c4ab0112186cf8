"""Settings → alerting's own configuration, in one place.

:class:`~alerting.service.AlertService` takes an :class:`~alerting.service.AlertConfig`
(rules, state, topic, receivers); this module is the one part of alerting that reads
``Settings`` for it, called by ``ragward serve`` and ``ragward consumer alerts``.
A malformed receiver or rules file raises ConfigError (naming the variable) here,
before anything starts.
"""

from __future__ import annotations

from alerting.notifiers.email import SmtpConfig
from alerting.rules import load_rules
from alerting.service import AlertConfig, Receivers
from alerting.state_store import db_path
from ragward.settings import Settings, secret_value


def smtp_config(settings: Settings) -> SmtpConfig | None:
    """The SMTP receiver's settings, or None; ConfigError (naming the variable) when malformed."""
    if settings.smtp_url is None:
        return None
    return SmtpConfig.from_url(
        settings.smtp_url.get_secret_value(), starttls=settings.smtp_starttls,
        sender=settings.alert_email_from, recipients=settings.alert_email_to,
    )


def receivers(settings: Settings) -> Receivers:
    return Receivers(
        slack_webhook_url=secret_value(settings.slack_webhook_url),
        webhook_url=secret_value(settings.alert_webhook_url),
        smtp=smtp_config(settings),
        alertmanager_url=secret_value(settings.alertmanager_url),
        alertmanager_resend_s=settings.alertmanager_resend_s,
    )


def alert_config(settings: Settings) -> AlertConfig:
    return AlertConfig(
        rules=load_rules(settings.alert_rules),
        state_path=db_path(settings.data_dir),
        topic=settings.topic_alerts,
        eval_interval_s=settings.alert_eval_interval_s,
        external_url=settings.alert_external_url,
        receivers=receivers(settings),
    )
