"""``ragward consumer metrics|alerts|audit``: each consumer's process.

Composed here, at the top, because a consumer's ``/metrics`` may be guarded by the
gateway's token check (``RAGWARD_METRICS_AUTH=token``): the consumers below know
only that they are handed a lifespan, never the gateway.
"""

from __future__ import annotations

import argparse

from alerting import consumer as alert_consumer
from gateway.auth import AccessPolicy, metrics_access_lifespan
from gateway.configuration import metrics_token_config
from ragward.settings import Settings
from telemetry import audit_consumer, metrics_consumer
from telemetry.consumer_http import Lifespan


def _access(settings: Settings) -> Lifespan:
    """The gateway's token check for a consumer's ``/metrics`` (nothing with
    ``RAGWARD_METRICS_AUTH=none``)."""
    return metrics_access_lifespan(metrics_token_config(settings),
                                   AccessPolicy(settings.roles, settings.index_allow))


def metrics(settings: Settings, args: argparse.Namespace) -> int:
    return metrics_consumer.main(settings, args, access=_access(settings))


def alerts(settings: Settings, args: argparse.Namespace) -> int:
    return alert_consumer.main(settings, args, access=_access(settings))


def audit(settings: Settings, args: argparse.Namespace) -> int:
    return audit_consumer.main(settings, args, access=_access(settings))
