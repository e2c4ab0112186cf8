"""``ragward rag-core``: the RAG service over HTTP (docs/api.md's shape, internal).

Routes: ``POST /v1/query``, ``POST /v1/query/batch``, ``POST /v1/chat/stream``
(a conversation answered as NDJSON chat events), ``GET /v1/indexes``,
``GET /health``, ``GET /ready``. It trusts the gateway: when
``RAGWARD_INTERNAL_TOKEN`` is set every ``/v1`` route needs a matching
``X-Internal-Token`` (401 otherwise), and the caller is read from ``X-Tenant``,
``X-Subject`` and ``X-Request-ID``. Query answers carry ``X-Index-Version``, the
version that produced them (the gateway keys its cache on it).

Tenancy: with ``X-Tenant`` a route sees only that tenant's own and shared indexes
(another tenant's answers 404 like a missing one, and is not listed); without it
the caller is the trusted internal one and sees every index (the gateway's
version refresh). So the token is the boundary: ``ragward rag-core`` refuses to
listen beyond loopback without ``RAGWARD_INTERNAL_TOKEN``.

The app's lifespan starts the :class:`~rag_core.service.RagService` (loading and
warming every index) and stops it; ``/ready`` answers 503 with the reason until
the default index is loaded.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import structlog
import uvicorn
from litestar import Litestar, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from rag_core.configuration import build_service
from rag_core.schemas import (
    BatchRequest,
    BatchResponse,
    ChatEvent,
    ChatRequest,
    IndexList,
    QueryRequest,
    QueryResponse,
)
from rag_core.service import RagService
from ragward import request_ids
from ragward.errors import ConfigError, Unauthenticated
from ragward.http_body import BoundedJsonRequest
from ragward.http_errors import EXCEPTION_HANDLERS, schema_router
from ragward.settings import Settings, env_name
from ragward.tracing import server_spans

log = structlog.get_logger(__name__)

UNKNOWN = "unknown"
NDJSON = "application/x-ndjson"
_event_encoder = msgspec.json.Encoder()


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Echo a sane ``X-Request-ID`` (or mint one) on every answer, errors included."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]  # Literal vs enum
            await app(scope, receive, send)
            return
        request_id = request_ids.from_headers(scope["headers"])
        request_ids.bind(scope, request_id)
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != request_ids.HEADER]
                headers.append((request_ids.HEADER, encoded))
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware


def _internal_token_guard(token: str | None) -> Any:
    expected = token.encode() if token else None

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if expected is None:
            return
        given = connection.headers.get("x-internal-token", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthenticated("missing or invalid X-Internal-Token")

    return guard


def _identity(request: Request[Any, Any, Any], name: str) -> str | None:
    """An identity header as the gateway sent it: UTF-8 bytes (a tenant may be ``租户``),
    which the ASGI layer hands over decoded as Latin-1."""
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not UTF-8: another client's plain Latin-1 text
        return value


def _caller(request: Request[Any, Any, Any]) -> tuple[str | None, str, str]:
    """(tenant: None without ``X-Tenant``, subject, request id)."""
    return (
        _identity(request, "x-tenant"),
        _identity(request, "x-subject") or UNKNOWN,
        str(request.scope.get("state", {}).get("request_id", "")),
    )


def _service(state: State) -> RagService:
    service: RagService = state.rag_service
    return service


def _v1_router(guard: Any) -> Router:
    """The /v1 routes, made per app so each app carries its own guard."""

    @post("/query", status_code=200)
    async def query(
        data: JSONBody[QueryRequest], request: Request[Any, Any, Any], state: State
    ) -> Response[QueryResponse]:
        tenant, subject, request_id = _caller(request)
        answer, version = await _service(state).query_with_version(
            data, tenant=tenant, subject=subject, request_id=request_id
        )
        return Response(answer, headers={"X-Index-Version": version})

    @post("/query/batch", status_code=200)
    async def query_batch(
        data: JSONBody[BatchRequest], request: Request[Any, Any, Any], state: State
    ) -> Response[BatchResponse]:
        tenant, subject, request_id = _caller(request)
        answer, version = await _service(state).query_batch_with_version(
            data, tenant=tenant, subject=subject, request_id=request_id
        )
        return Response(answer, headers={"X-Index-Version": version})

    @get("/indexes")
    async def list_indexes(request: Request[Any, Any, Any], state: State) -> IndexList:
        """The indexes the ``X-Tenant`` may use (every index without the header)."""
        return IndexList(indexes=_service(state).indexes(_identity(request, "x-tenant")))

    @post("/chat/stream", status_code=200)
    async def chat_stream(
        data: JSONBody[ChatRequest], request: Request[Any, Any, Any], state: State
    ) -> Stream:
        """The conversation's answer as NDJSON chat events (rag_core.schemas); a client
        that disconnects cancels the generation."""
        tenant, subject, request_id = _caller(request)
        version, events = await _service(state).open_chat(
            data, tenant=tenant, subject=subject, request_id=request_id
        )
        return Stream(_ndjson(events), media_type=NDJSON, headers={"X-Index-Version": version})

    return Router(path="/v1", route_handlers=[query, query_batch, list_indexes, chat_stream],
                  guards=[guard])


async def _ndjson(events: AsyncIterator[ChatEvent]) -> AsyncIterator[bytes]:
    async for event in events:
        yield _event_encoder.encode(event) + b"\n"


@get("/health", include_in_schema=False)
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/ready", include_in_schema=False)
async def ready(state: State) -> Response[dict[str, Any]]:
    service = _service(state)
    reason = service.not_ready_reason
    if reason is not None:
        return Response({"status": "unavailable", "reason": reason}, status_code=503)
    # /ready answers without the internal token (probes): tenants' index names stay out.
    versions = {info.name: info.version for info in service.indexes() if info.shared}
    return Response({"status": "ready", "indexes": versions}, status_code=200)


def create_app(settings: Settings, service: RagService | None = None) -> Litestar:
    """The rag_core app; builds its service from settings unless one is passed in.

    Either way the app's lifespan starts the service and stops it (closing its
    clients) on shutdown.
    """
    rag_service = service or build_service(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.rag_service = rag_service
        await rag_service.start()
        try:
            yield
        finally:
            await rag_service.stop()

    token = settings.internal_token.get_secret_value() if settings.internal_token else None
    guard = _internal_token_guard(token)
    app = Litestar(
        route_handlers=[_v1_router(guard), health, ready],
        lifespan=[lifespan],
        middleware=[request_id_middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=BoundedJsonRequest,
        openapi_config=OpenAPIConfig(title="ragward rag_core", version="1", path="/schema",
                                     openapi_router=schema_router("/schema")),
        state=State({"rag_service": rag_service}),
        debug=False,
    )
    app.asgi_handler = server_spans(app.asgi_handler, "rag_core",
                                    polled=frozenset({"/v1/indexes"}))
    return app


def check_internal_token(settings: Settings, host: str) -> None:
    """Without ``RAGWARD_INTERNAL_TOKEN`` anyone who reaches rag_core reads every index
    unredacted: refuse beyond loopback (ConfigError), warn once on it."""
    if settings.internal_token is not None:
        return
    if not _is_loopback(host):
        raise ConfigError(
            f"{env_name('internal_token')} must be set for `ragward rag-core` on {host} "
            "(not loopback): without it anyone who reaches it reads every index"
        )
    log.warning("internal_token_unset", host=host,
                hint=f"set {env_name('internal_token')} before exposing rag-core")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that might resolve anywhere


def main(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward rag-core [--host H] [--port P]``."""
    host = args.host or settings.host
    check_internal_token(settings, host)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=args.port or settings.rag_core_port,
        log_config=None,
        access_log=False,
    )
    return 0
