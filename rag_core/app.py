"""``ragward rag-core``: the RAG service over HTTP (CONTRACT §4 shape, internal).

Routes: ``POST /v1/query``, ``POST /v1/query/batch``, ``POST /v1/chat/stream``
(a conversation answered as NDJSON chat events), ``GET /v1/indexes``,
``GET /health``, ``GET /ready``. It trusts the gateway: when
``RAGWARD_INTERNAL_TOKEN`` is set every ``/v1`` route needs a matching
``X-Internal-Token`` (401 otherwise), and the caller is read from ``X-Tenant``,
``X-Subject`` and ``X-Request-ID``. Query answers carry ``X-Index-Version``, the
version that produced them (the gateway keys its cache on it).

The app's lifespan starts the :class:`~rag_core.service.RagService` (loading and
warming every index) and stops it; ``/ready`` answers 503 with the reason until
the default index is loaded.
"""

from __future__ import annotations

import argparse
import hmac
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody
from litestar.response import Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from rag_core.schemas import (
    BatchRequest,
    BatchResponse,
    ChatEvent,
    ChatRequest,
    IndexList,
    QueryRequest,
    QueryResponse,
)
from rag_core.service import RagService, build_service
from ragward.errors import Unauthenticated
from ragward.http_errors import EXCEPTION_HANDLERS
from ragward.settings import Settings

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID_HEADER = b"x-request-id"
UNKNOWN = "unknown"
NDJSON = "application/x-ndjson"
_event_encoder = msgspec.json.Encoder()


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Echo a sane ``X-Request-ID`` (or mint one) on every answer, errors included."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]  # Literal vs enum
            await app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == _REQUEST_ID_HEADER:
                candidate = value.decode("latin-1")
                if _SANE_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != _REQUEST_ID_HEADER]
                headers.append((_REQUEST_ID_HEADER, encoded))
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


def _caller(request: Request[Any, Any, Any]) -> tuple[str, str, str]:
    headers = request.headers
    return (
        headers.get("x-tenant") or UNKNOWN,
        headers.get("x-subject") or UNKNOWN,
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
    async def list_indexes(state: State) -> IndexList:
        return IndexList(indexes=_service(state).indexes())

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
    versions = {info.name: info.version for info in service.indexes()}
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
    return Litestar(
        route_handlers=[_v1_router(guard), health, ready],
        lifespan=[lifespan],
        middleware=[request_id_middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State({"rag_service": rag_service}),
        debug=False,
    )


def main(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward rag-core [--host H] [--port P]``."""
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port or settings.rag_core_port,
        log_config=None,
        access_log=False,
    )
    return 0
