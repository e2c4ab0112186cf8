"""Exactly one audit event per request, durable before the response leaves.

:class:`RecordingASGI` wraps the whole Litestar app — outside its exception
handling, so it sees every answer: 2xx, 401, 404, 413, 429, 5xx, malformed
JSON. When the app starts its response, the wrapper builds the request's audit
event (and a usage event when rag_core or the cache answered), and awaits the
publisher, which returns only once the events are acknowledged by Kafka or
fsynced to the local spool. Only then do the status line and body go out.
A streamed chat answer has a second, closing audit event: the handler passes
the closing :class:`~gateway.outcome.Outcome` to :func:`finisher_of`, which makes
it (and the usage event) durable the same way before ``data: [DONE]`` goes out.
If the audit event cannot be made durable, a 2xx becomes a 503: no
acknowledged request without its audit record (docs/architecture.md).

What an event says comes from values each step produced once, never from a bag
filled along the way: the caller the route's authentication hook found (``PRINCIPAL``), the
action its route declares (``opt={AUDIT_ACTION: ...}``), the outcome its handler
reported (:func:`report`) and the error mapping's reason. The wrapper is built
with what it needs of the configuration (topics, model name, question hasher,
client-address policy); the live clients (publisher, signer, redactor) come
from the components once the lifespan has started them.

The wrapper also assigns the request id, adds ``X-Request-ID``, writes the one
log line per request and records the gateway's Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, cast

import msgspec
import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from gateway.metrics import GatewayMetrics
from gateway.outcome import Outcome
from ragward import request_ids, tracing
from ragward.errors import DependencyUnavailable
from ragward.http_errors import error_body, openai_shaped
from telemetry.client_address import ClientAddressPolicy
from telemetry.events import AuditEvent, UsageEvent, new_event_id, rfc3339

if TYPE_CHECKING:
    from gateway.auth import Principal
    from gateway.components import Components
    from gateway.pii import Redactor
    from telemetry.bus import Publisher

log = structlog.get_logger("ragward.gateway")

PRINCIPAL = "ragward_principal"  # the authenticated caller, in the scope's state
AUDIT_ACTION = "ragward_audit_action"  # a route handler's opt: the action its events name
_OUTCOME = "ragward_outcome"
_FINISH = "ragward_finish"
_NOTHING_DECIDED = Outcome()
_UNAUDITED = frozenset({"/health", "/ready", "/metrics"})  # probes and scrapes
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer
_error_body = msgspec.json.Encoder()
USER_AGENT_CHARS = 256
_PUBLISH_ATTRIBUTES: tracing.Attributes = {"messaging.system": "kafka",
                                           "messaging.operation.type": "send"}


def report(scope: Scope, outcome: Outcome) -> None:
    """Hand the request's outcome to the recorder (a later phase replaces it whole)."""
    scope["state"][_OUTCOME] = outcome


def outcome_of(scope: Scope) -> Outcome:
    """The outcome reported for this request; an empty one before any was."""
    outcome: Outcome = scope.get("state", {}).get(_OUTCOME, _NOTHING_DECIDED)
    return outcome


def finisher_of(scope: Scope) -> Callable[[Outcome], Awaitable[None]]:
    """For a response that outlives its status line (a stream): make the request's
    closing audit event (and its usage event) durable from the closing outcome;
    raises DependencyUnavailable when that is not possible."""
    finish: Callable[[Outcome], Awaitable[None]] = scope["state"][_FINISH]
    return finish


def _decision(status: int) -> Literal["allow", "deny", "rate_limited", "invalid", "error"]:
    if status < 400:
        return "allow"
    if status in (401, 403):
        return "deny"
    if status == 429:
        return "rate_limited"
    if status < 500:
        return "invalid"
    return "error"


class _UserAgents:
    """The header as the audit log keeps it: redacted like every other text, then cut
    to ``USER_AGENT_CHARS`` (redacting first, so no entity is cut into a fragment the
    redactor no longer recognises). Clients send the same few headers again and again,
    so each is redacted once (redaction is deterministic); the memo is bounded."""

    MAX = 1024

    def __init__(self) -> None:
        self._redactor: Redactor | None = None
        self._seen: dict[bytes, str] = {}

    def __call__(self, raw: bytes, redactor: Redactor) -> str:
        if not raw:
            return ""
        if redactor is not self._redactor:  # a new lifespan's components
            self._redactor, self._seen = redactor, {}
        kept = self._seen.get(raw)
        if kept is None:
            if len(self._seen) >= self.MAX:
                self._seen.clear()
            kept = self._seen[raw] = redactor.redact(raw.decode("latin-1")).text[
                :USER_AGENT_CHARS]
        return kept


def _action(scope: HTTPScope) -> str:
    handler = scope.get("route_handler")
    return str(handler.opt.get(AUDIT_ACTION, "")) if handler is not None else ""


def _reason(scope: HTTPScope, outcome: Outcome, status: int, client_left: bool) -> str | None:
    """Why, for the audit log: the client leaving, the handler's own reason, else the
    error mapping's (finer than the code the client saw), else the bare status."""
    if client_left:
        return "client_disconnected"
    if outcome.reason is not None or status < 400:
        return outcome.reason
    reason: str | None = scope.get("state", {}).get("error_reason")
    return reason or f"http_{status}"


async def _publish_signed(publisher: Publisher, topic: str, key: str,
                          sign: Callable[[UsageEvent], bytes], event: UsageEvent) -> str | None:
    return await publisher.publish(topic, key, sign(event))


class RecordingASGI:
    def __init__(
        self,
        app: ASGIApp,
        *,
        components: Callable[[], Components | None],
        metrics: GatewayMetrics,
        audit_topic: str,
        usage_topic: str,
        model: str,
        question_hash: Callable[[str], str],
        client_address: ClientAddressPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app = app
        self._clock = clock
        self._components = components
        self._metrics = metrics
        self._audit_topic = audit_topic
        self._usage_topic = usage_topic
        self._model = model
        self._question_hash = question_hash
        self._client_address = client_address
        self._user_agent = _UserAgents()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        await self._record(scope, receive, send)

    async def _record(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = request_ids.from_headers(scope["headers"])
        request_ids.bind(scope, request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        replaced = client_gone = client_left = False
        status = 500

        async def receive_watched() -> ReceiveMessage:
            nonlocal client_gone
            message = await receive()
            client_gone = client_gone or message["type"] == "http.disconnect"
            return message

        async def finish(outcome: Outcome) -> None:
            report(cast("Scope", scope), outcome)
            await self._publish(scope, request_id, status, client_left, started)

        scope["state"][_FINISH] = finish

        async def send_recorded(message: Message) -> None:
            nonlocal replaced, status, client_left
            if replaced:
                return  # the app's own body for a response we had to replace
            if message["type"] == "http.response.start":
                status = message["status"]
                if client_gone and status >= 500:
                    # The client hung up mid-request (Litestar calls that a 500): its
                    # doing, not ours, so it must not count as a server error or page.
                    status = message["status"] = CLIENT_CLOSED_REQUEST
                    client_left = True
                headers = list(message.get("headers", []))
                headers.append((request_ids.HEADER, request_id.encode()))
                message["headers"] = headers
                if scope["path"] not in _UNAUDITED:
                    try:
                        await self._publish(scope, request_id, status, client_left, started)
                    except DependencyUnavailable:
                        if status < 400:
                            replaced, status = True, 503
                            await self._send_unavailable(scope, send, request_id)
                            return
            await send(message)

        self._metrics.in_flight.inc()
        try:
            await self._app(cast("Scope", scope), receive_watched, send_recorded)
        finally:
            self._metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            self._metrics.observe(route, scope["method"], status, elapsed)
            if scope["path"] not in _UNAUDITED:
                outcome = outcome_of(cast("Scope", scope))
                principal: Principal | None = scope["state"].get(PRINCIPAL)
                log.info(
                    "request", method=scope["method"], route=route, status=status,
                    latency_ms=round(elapsed * 1000, 3),
                    tenant=principal.tenant if principal else "-",
                    subject=principal.subject if principal else "-",
                    reason=_reason(scope, outcome, status, client_left), cached=outcome.cached,
                )
            structlog.contextvars.unbind_contextvars("request_id")

    async def _publish(
        self, scope: HTTPScope, request_id: str, status: int, client_left: bool, started: float
    ) -> None:
        components = self._components()
        if components is None:  # not started, or already shut down
            raise DependencyUnavailable("the audit log is unavailable")
        with tracing.span("audit publish", "producer", _PUBLISH_ATTRIBUTES):
            await self._publish_events(
                components, scope, request_id, status, client_left, started,
                tracing.current_ids() or (None, None),
            )

    async def _publish_events(
        self, components: Components, scope: HTTPScope, request_id: str, status: int,
        client_left: bool, started: float, trace: tuple[str, str] | tuple[None, None],
    ) -> None:
        outcome = outcome_of(cast("Scope", scope))
        principal: Principal | None = scope["state"].get(PRINCIPAL)
        tenant, subject = (principal.tenant, principal.subject) if principal else ("-", "-")
        publisher = components.publisher
        user_agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"")
        client = scope.get("client")
        ts = rfc3339(self._clock())
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        route = scope.get("path_template") or "unmatched"
        trace_id, span_id = trace
        audit = AuditEvent(
            event_id=new_event_id(), request_id=request_id, ts=ts,
            tenant=tenant, subject=subject, roles=list(principal.roles) if principal else [],
            method=scope["method"], route=route, action=_action(scope), index=outcome.index,
            client_addr=self._client_address.apply(client[0] if client else ""),
            user_agent=self._user_agent(user_agent, components.redactor),
            status=status, decision=_decision(status),
            reason=_reason(scope, outcome, status, client_left),
            latency_ms=latency_ms, cached=outcome.cached,
            question_hmac=[self._question_hash(q) for q in outcome.questions_redacted],
            questions_redacted=list(outcome.questions_redacted),
            redactions=dict(outcome.redactions),
            chat=outcome.chat, trace_id=trace_id, span_id=span_id,
        )
        sign = components.signer.sign
        usage_sent: asyncio.Future[str | None] | None = None
        if outcome.usage is not None and status < 400:
            u = outcome.usage
            usage = UsageEvent(
                event_id=new_event_id(), request_id=request_id, ts=ts,
                tenant=tenant, subject=subject, route=route, index=outcome.index,
                model=self._model, status=status, latency_ms=latency_ms, cached=outcome.cached,
                questions=outcome.questions, prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens, embedding_tokens=u.embedding_tokens,
                total_tokens=u.total_tokens, cost_usd=u.cost_usd,
                trace_id=trace_id, span_id=span_id,
            )
            # Made durable alongside the audit event: one task (gather would make two).
            # Signed in that task: its first step runs while the audit event waits for
            # its ack, not before the audit event is even sent (an Ed25519 signature is
            # ~50 µs here), and still before the producer's sender wakes, so both events
            # leave in one produce request.
            usage_sent = asyncio.ensure_future(
                _publish_signed(publisher, self._usage_topic, tenant, sign, usage))
        try:
            self._published(self._audit_topic,
                            await publisher.publish(self._audit_topic, tenant, sign(audit)))
        except Exception as exc:
            log.error("audit_event_not_durable", error=type(exc).__name__)
            raise DependencyUnavailable("the audit log is unavailable") from None
        finally:
            if usage_sent is not None:
                await self._usage_settled(usage_sent)

    async def _usage_settled(self, sent: asyncio.Future[str | None]) -> None:
        """The usage event counts what was answered; losing it is logged, not refused."""
        try:
            self._published(self._usage_topic, await sent)
        except Exception as exc:
            log.warning("usage_event_lost", error=type(exc).__name__)

    def _published(self, topic: str, how: str | None) -> None:
        if how is not None:  # how it became durable: kafka | spool | memory ...
            self._metrics.published(topic, how)

    async def _send_unavailable(self, scope: HTTPScope, send: Send, request_id: str) -> None:
        status, error = error_body(
            503, "dependency_unavailable",
            "the audit log is unavailable; the request was not completed", request_id,
            openai=openai_shaped(cast("Scope", scope)),
        )
        body = _error_body.encode(error)
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", b"5"), (b"x-request-id", request_id.encode())],
        })
        await send({"type": "http.response.body", "body": body, "more_body": False})
