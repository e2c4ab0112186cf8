"""Receivers of grouped notifications: Slack, email (SMTP), generic webhook.

Each notifier turns a :class:`~alerting.grouping.Notification` into one
delivery and raises :class:`NotifyError` when it fails, saying whether trying
again may help and, for HTTP 429/503, how long the receiver asked to wait.
:func:`deliver` wraps a notifier with retries: exponential backoff with jitter,
``Retry-After`` honoured, all within a deadline, so a dead receiver ends as one
counted failure and never holds up evaluation (the service runs deliveries in
tasks).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx
import structlog

from alerting.grouping import Notification

log = structlog.get_logger(__name__)


class NotifyError(Exception):
    """A delivery failed. ``retriable``: may succeed later; ``retry_after``: seconds asked."""

    def __init__(self, message: str, *, retriable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.retry_after = retry_after


class Notifier(Protocol):
    name: str

    async def send(self, notification: Notification) -> None:
        """Deliver once; raise NotifyError on failure."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    deadline_s: float = 120.0
    """Give up (and count a failure) when the next wait would end after this."""

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Equal jitter: half the exponential step fixed, half random."""
        step = min(self.max_delay_s, self.base_delay_s * 2.0**attempt)
        return step / 2 + rng.uniform(0, step / 2)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds: delta-seconds, or an HTTP date relative to ``Date``."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
        sent = parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (when - sent).total_seconds())


def http_error(receiver: str, status: int, headers: Mapping[str, str], body: str) -> NotifyError:
    """The NotifyError for a non-2xx answer: 429, 408 and 5xx are worth retrying."""
    retriable = status in (408, 429) or status >= 500
    retry_after = parse_retry_after(headers) if status in (429, 503) else None
    snippet = body[:200].replace("\n", " ")
    return NotifyError(f"{receiver} answered {status}: {snippet}", retriable=retriable,
                       retry_after=retry_after)


async def deliver(
    notifier: Notifier,
    notification: Notification,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] | None = None,
    rng: random.Random | None = None,
) -> int:
    """Send with retries; return the number of attempts; raise the last NotifyError."""
    monotonic = monotonic or asyncio.get_running_loop().time
    rng = rng or random.Random()
    started = monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            await notifier.send(notification)
            return attempt
        except NotifyError as exc:
            if not exc.retriable or attempt >= policy.attempts:
                raise
            wait = exc.retry_after if exc.retry_after is not None else policy.backoff(
                attempt - 1, rng)
            if monotonic() - started + wait > policy.deadline_s:
                raise
            log.warning("alert_notification_retry", receiver=notifier.name, attempt=attempt,
                        wait_s=round(wait, 3), error=str(exc))
            await sleep(wait)


async def post_json(client: httpx.AsyncClient, url: str, payload: object, receiver: str) -> None:
    """POST ``payload`` as JSON; NotifyError on a transport error or a non-2xx answer.

    The URL is never put in the error: webhook URLs carry their secret in the path.
    """
    try:
        response = await client.post(url, json=payload)
    except httpx.TimeoutException as exc:
        raise NotifyError(f"{receiver} timed out ({type(exc).__name__})", retriable=True) from None
    except httpx.TransportError as exc:
        raise NotifyError(f"{receiver} unreachable ({type(exc).__name__})",
                          retriable=True) from None
    if response.is_success:
        return
    raise http_error(receiver, response.status_code, response.headers, response.text)
