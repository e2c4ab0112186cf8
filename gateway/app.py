"""The gateway's HTTP surface (docs/api.md): authenticate, authorise, hand over, answer.

``create_app(settings)`` builds the Litestar app; every client it needs is
created in the lifespan (:func:`gateway.components.open_components`) unless the
caller hands ready-made ones in (``ragward serve``, tests). ``main`` runs it
under uvicorn for ``ragward gateway``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import FromQuery, JSONBody
from litestar.types import ControllerRouterHandler
from prometheus_client import CollectorRegistry

from gateway.auth import MetricsAccess
from gateway.components import Components, model_name, open_components
from gateway.fingerprint import QuestionHasher
from gateway.handlers import (
    authenticated,
    authorise,
    caller_of,
    components_of,
    concluded,
    rate_headers,
    refuse,
    use_cache,
)
from gateway.metrics import GatewayMetrics
from gateway.openai.routes import OPENAI_ROUTES
from gateway.outcome import Outcome
from gateway.recorder import AUDIT_ACTION, RecordingASGI, outcome_of
from rag_core.schemas import BatchRequest, BatchResponse, QueryRequest, QueryResponse
from ragward.errors import Forbidden, NotFound, ValidationFailed
from ragward.http_body import BoundedJsonRequest
from ragward.http_errors import EXCEPTION_HANDLERS, OPENAI_PATHS, schema_router
from ragward.settings import Settings
from ragward.tracing import server_spans
from telemetry.client_address import ClientAddressPolicy
from telemetry.consumer_http import METRICS_ACCESS, METRICS_MEDIA_TYPE, metrics_guards
from telemetry.exposition import render, render_negotiated


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    request_id: str


class ErrorBody(msgspec.Struct):
    """Every error answer (docs/api.md, "Errors")."""

    error: ErrorDetail


_ERROR_MEANING = {
    400: "malformed JSON", 401: "missing, invalid or expired token", 403: "role lacks permission",
    404: "not found", 413: "body over the limit", 422: "validation failed (or PII blocked)",
    429: "quota exceeded", 502: "rag_core failed", 503: "rag_core or a dependency unavailable",
    504: "rag_core too slow",
}


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {s: ResponseSpec(data_container=ErrorBody, description=_ERROR_MEANING[s],
                            generate_examples=False) for s in statuses}


_QUERY_ERRORS = _errors(400, 401, 403, 413, 422, 429, 502, 503, 504)


@post("/v1/query", status_code=200, summary="Answer one question", responses=_QUERY_ERRORS,
      before_request=authenticated, opt={AUDIT_ACTION: "query"})
async def query(
    request: Request[Any, Any, Any], data: JSONBody[QueryRequest]
) -> Response[QueryResponse]:
    principal = authorise(request, "query", data.index)
    pipeline = components_of(request.app.state).pipeline
    outcome = concluded(request, await pipeline.query(
        data, caller_of(request, principal), use_cache=use_cache(request, principal),
    ))
    return Response(outcome.answers[0], headers=rate_headers(outcome))


@post("/v1/query/batch", status_code=200, responses=_QUERY_ERRORS, before_request=authenticated,
      summary="Answer a batch (up to RAGWARD_MAX_BATCH) concurrently",
      opt={AUDIT_ACTION: "query.batch"})
async def query_batch(
    request: Request[Any, Any, Any], data: JSONBody[BatchRequest]
) -> Response[BatchResponse]:
    principal = authorise(request, "query", data.index)
    gw = components_of(request.app.state)
    gw.policy.require(principal, "batch")
    outcome = concluded(request, await gw.pipeline.query_batch(
        data, caller_of(request, principal), use_cache=use_cache(request, principal),
    ))
    return Response(BatchResponse(results=list(outcome.answers)), headers=rate_headers(outcome))


@get("/v1/usage", summary="The caller's tenant: limits, used, remaining, reset times",
     responses=_errors(401, 503), before_request=authenticated, opt={AUDIT_ACTION: "usage.read"})
async def usage(request: Request[Any, Any, Any]) -> dict[str, Any]:
    principal = authorise(request, None)
    usage_now: dict[str, Any] = await components_of(request.app.state).quota.usage(
        principal.tenant
    )
    return {"tenant": principal.tenant, **usage_now}


@get("/v1/audit", summary="The caller's tenant's audit records, newest first (audit:read)",
     responses=_errors(400, 401, 403, 404, 422, 503), before_request=authenticated,
     opt={AUDIT_ACTION: "audit.read"})
async def audit(
    request: Request[Any, Any, Any],
    tenant: FromQuery[str | None] = None,
    subject: FromQuery[str | None] = None,
    request_id: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    limit: FromQuery[int] = 100,
    cursor: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """Scoped to the caller's tenant (docs/api.md, "Tenancy"): no ``tenant`` filter means its own;
    another tenant needs ``audit:read:all`` and is refused (403, audited) otherwise."""
    principal = authorise(request, "audit:read")
    gw = components_of(request.app.state)
    try:
        scoped_tenant = gw.policy.audit_tenant(principal, tenant)
    except Forbidden as exc:
        refuse(request, Outcome(reason="audit_other_tenant", error=exc))
    if not 1 <= limit <= 1000:
        raise ValidationFailed("limit: must be between 1 and 1000", field="limit")
    if gw.audit_reader is None:
        raise NotFound("this gateway does not serve the audit log: set RAGWARD_AUDIT_DSN")
    page: dict[str, Any] = await gw.audit_reader(
        tenant=scoped_tenant, subject=subject, request_id=request_id, since=since,
        until=until, limit=limit, cursor=cursor,
    )
    return page


@get("/health", summary="Liveness", include_in_schema=True)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", summary="Readiness: index loaded and dependencies answering")
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    status, checks = await components_of(request.app.state).readiness()
    code = 503 if status == "unavailable" else 200
    return Response({"status": status, "checks": checks}, status_code=code)


def _metrics_route(settings: Settings) -> ControllerRouterHandler:
    @get("/metrics", summary="Prometheus exposition", media_type=METRICS_MEDIA_TYPE,
         guards=metrics_guards(settings.metrics_auth == "token"))
    async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
        registry = components_of(request.app.state).metrics.registry
        negotiated = render_negotiated(registry, request.headers.get("accept"))
        if negotiated is not None:  # OpenMetrics: with the latency buckets' exemplars
            return Response(negotiated[0], media_type=negotiated[1])
        return Response(render(registry), media_type=METRICS_MEDIA_TYPE)

    return metrics_endpoint


def _redacting(
    handlers: dict[type[Exception] | int, Any], components: Callable[[], Components | None]
) -> dict[type[Exception] | int, Any]:
    """The shared error mapping, with every message passed through the redactor before it
    leaves: messages can echo input (an index name, a parameter), and rag_core's text is
    as untrusted as its answers. Before start-up there is no redactor, and no input
    reaches a handler that echoes it, so the message is replaced outright."""

    def wrap(handler: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
        def redacted(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
            response = handler(request, exc)
            error = response.content.get("error") if isinstance(response.content, dict) else None
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                built = components()
                error["message"] = (
                    built.redactor.redact(error["message"]).text if built is not None
                    else "the gateway is not ready"
                )
            # Refused after admission (rag_core failed, say): the quota still counted it.
            response.headers.update(rate_headers(outcome_of(request.scope)))
            return response

        return redacted

    return {kind: wrap(handler) for kind, handler in handlers.items()}


def create_app(
    settings: Settings,
    components: Components | None = None,
    *,
    metrics: GatewayMetrics | None = None,
    routes: Sequence[ControllerRouterHandler] = (),
    lifespans: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
    clock: Callable[[], float] = time.time,
    **given: Any,
) -> Litestar:
    """The gateway app.

    Its clients are built in the lifespan from settings, except those ``given``
    (upstream, publisher, audit_reader, pii_scanner: see
    :func:`gateway.components.open_components`) or a whole ready ``components``.
    ``ragward serve`` adds its own ``routes`` (the dashboard) and ``lifespans``
    (rag_core and the consumers, started before the gateway's clients); ``clock``
    stamps the events (tests drive it together with the alert engine's).
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if components is not None:
            app.state.components = components
            app.state[METRICS_ACCESS] = MetricsAccess(components.authenticator, components.policy)
            yield
            return
        async with open_components(settings, metrics=shared_metrics, **given) as built:
            app.state.components = built
            app.state[METRICS_ACCESS] = MetricsAccess(built.authenticator, built.policy)
            yield
        app.state.components = None
        app.state[METRICS_ACCESS] = None


    shared_metrics = (
        components.metrics if components else metrics or GatewayMetrics(CollectorRegistry())
    )
    app = Litestar(
        route_handlers=[query, query_batch, usage, audit, health, ready,
                        _metrics_route(settings), *OPENAI_ROUTES, *routes],
        lifespan=[*lifespans, lifespan],
        exception_handlers=_redacting(EXCEPTION_HANDLERS, lambda: app.state.get("components")),
        request_class=BoundedJsonRequest,
        opt={OPENAI_PATHS: ("/v1/chat/completions", "/v1/models")},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="ragward gateway", version="1", path="/schema",
                                     openapi_router=schema_router("/schema")),
        type_encoders={msgspec.Struct: msgspec.to_builtins},
        logging_config=None,  # ragward.logs owns logging: structlog JSON lines
        debug=False,
    )
    # Wrap outside Litestar's exception handling so every response — including 404s
    # and errors — is audited before it leaves (see gateway.recorder).
    app.asgi_handler = server_spans(RecordingASGI(
        app.asgi_handler,
        components=lambda: app.state.get("components"),
        metrics=shared_metrics,
        audit_topic=settings.topic_audit,
        usage_topic=settings.topic_usage,
        model=model_name(settings),
        question_hash=QuestionHasher.from_settings(settings),
        client_address=ClientAddressPolicy.from_settings(settings),
        clock=clock,
    ), "gateway")  # outermost: the audit publish and the request's log line are inside it
    return app
