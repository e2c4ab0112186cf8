"""One mapping from exceptions to the contract's error JSON, for every Litestar app.

``{"error": {"code", "message", "request_id"}}`` with the status the domain error
names. Unknown exceptions become a bare 500: the detail goes to the log, never to
the client.

The OpenAI-compatible routes (docs/openai.md) get the same mapping in OpenAI's
shape, ``OPENAI_EXCEPTION_HANDLERS``: ``{"error": {"message", "type", "param",
"code"}, "request_id"}``, so the SDKs raise their usual exception classes. Like
OpenAI, they answer a request that fails validation with 400, not 422.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response, Router, get
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    ValidationException,
)
from litestar.params import FromPath
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Scope

from ragward import request_ids
from ragward.errors import NotFound, RagwardError

log = structlog.get_logger("ragward.http")

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "invalid_token",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "quota_exceeded",
    503: "unavailable",
}


def request_id_of(request: Request[Any, Any, Any]) -> str:
    return request_ids.of(request.scope)


_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
    415: "invalid_request_error", 429: "rate_limit_error",
}


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    reason: str | None = None,
    param: str | None = None,
) -> Response[dict[str, Any]]:
    # Kept in the scope for the audit event: the code, and a finer internal reason
    # (e.g. why a token was rejected) that the client never sees.
    state = request.scope.setdefault("state", {})
    state["error_code"], state["error_reason"] = code, reason or code
    request_id = request_id_of(request)
    all_headers = dict(headers or {})
    if request_id and not request_ids.echoed(request.scope):
        all_headers["X-Request-ID"] = request_id
    status, body = error_body(status, code, message, request_id,
                              openai=openai_shaped(request.scope), param=param)
    return Response(body, status_code=status, headers=all_headers, media_type="application/json")


OPENAI_SHAPE = "ragward_openai_errors"
# An app's opt: the path prefixes of its OpenAI-compatible surface, for errors raised
# before a handler is chosen (a wrong method, an unknown sub-path): an SDK pointed
# there must still get its own shape.
OPENAI_PATHS = "ragward_openai_paths"


def error_body(
    status: int, code: str, message: str, request_id: str, *, openai: bool,
    param: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of an error answer, in ragward's shape or OpenAI's
    (whose clients expect 400 where ragward says 422)."""
    if not openai:
        return status, {"error": {"code": code, "message": message, "request_id": request_id}}
    status = 400 if status == 422 else status
    kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code},
                    "request_id": request_id}


def openai_shaped(scope: Scope) -> bool:
    """Whether this request is on an app's OpenAI-compatible surface: its handler says
    so, or (before a handler is chosen) its path is under one of the app's prefixes."""
    handler = scope.get("route_handler")
    if handler is not None and handler.opt.get(OPENAI_SHAPE):
        return True
    app = scope.get("app")
    prefixes: tuple[str, ...] = app.opt.get(OPENAI_PATHS, ()) if app is not None else ()
    return bool(prefixes) and scope.get("path", "").startswith(prefixes)


def _validation_message(exc: ValidationException) -> tuple[int, str]:
    """Litestar reports malformed JSON and wrong types as one exception: split them."""
    detail = exc.extra if isinstance(exc.extra, list) else []
    fields = [str(item.get("key")) for item in detail if isinstance(item, dict) and item.get("key")]
    if not fields and "JSON" in str(exc.detail):
        return 400, "malformed JSON body"
    if fields:
        messages = [
            f"{item.get('key')}: {item.get('message')}" for item in detail if isinstance(item, dict)
        ]
        return 422, "; ".join(messages)
    return 422, str(exc.detail or "invalid request")


def handle_ragward_error(request: Request[Any, Any, Any], exc: RagwardError) -> Response[Any]:
    if exc.status >= 500:
        log.warning("request_failed", code=exc.code, status=exc.status)
    reason = getattr(exc, "reason", None)
    param = getattr(exc, "field", None)
    return error_response(request, exc.status, exc.code, exc.message, exc.headers(), reason,
                          param)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    param = None
    if isinstance(exc, ValidationException):
        status, message = _validation_message(exc)
        code = "bad_request" if status == 400 else "validation_error"
        param = _first_field(exc)
    else:
        code = _CODES_BY_STATUS.get(status, "error")
        message = str(exc.detail) if status < 500 else "internal error"
        if isinstance(exc, NotAuthorizedException):
            headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
    return error_response(request, status, code, message, headers, param=param)


def _first_field(exc: ValidationException) -> str | None:
    detail = exc.extra if isinstance(exc.extra, list) else []
    for item in detail:
        if isinstance(item, dict) and item.get("key"):
            key = str(item["key"])
            return key.removeprefix("$.") if key.startswith("$.") else key
    return None


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_exception", exc_type=type(exc).__name__, exc_info=exc)
    return error_response(request, HTTP_500_INTERNAL_SERVER_ERROR, "internal", "internal error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    RagwardError: handle_ragward_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}


def schema_router(path: str = "/schema") -> Router:
    """The router Litestar serves its OpenAPI documents from, for ``OpenAPIConfig``.

    Litestar answers an unknown path under it with its own HTML 404 page; this
    router's catch-all comes first, so that 404 is the contract's JSON error too.
    """

    # Same template as Litestar's own catch-all, so this one, registered first, wins.
    @get("/{path:str}", include_in_schema=False, sync_to_thread=False)
    def unknown_schema_document(path: FromPath[str]) -> None:
        raise NotFound("no such schema document")

    return Router(path, route_handlers=[unknown_schema_document])
