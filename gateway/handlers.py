"""What every gateway route handler does first: find the components, authenticate the
caller (a guard, before the body is parsed), authorise it, and name it for the upstream.

Shared by the contract's routes (:mod:`gateway.app`) and the OpenAI-compatible ones
(:mod:`gateway.openai.routes`), so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State

from gateway.auth import Principal
from gateway.components import Components
from gateway.forward import Caller
from gateway.recorder import record_of
from ragward import tracing

ADMIN = "*"
PRINCIPAL = "ragward_principal"  # the authenticated caller, in the scope's state


def components_of(state: State) -> Components:
    components: Components = state.components
    return components


async def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: object) -> None:
    """Guard: the bearer token is checked before the body is even parsed, so an
    unauthenticated caller learns nothing about the API's validation rules."""
    gw = components_of(connection.app.state)
    with tracing.span("authenticate"):
        principal = await gw.authenticator.authenticate(connection.headers.get("authorization"))
    record = record_of(connection.scope)
    record.tenant, record.subject, record.roles = (
        principal.tenant, principal.subject, list(principal.roles),
    )
    connection.scope["state"][PRINCIPAL] = principal


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.scope["state"][PRINCIPAL]
    return principal


def authorise(
    request: Request[Any, Any, Any], permission: str | None, index: str | None = None
) -> Principal:
    principal = principal_of(request)
    if permission is not None:
        with tracing.span("authorise", attributes={"ragward.permission": permission}):
            components_of(request.app.state).policy.require(principal, permission, index)
    return principal


def use_cache(request: Request[Any, Any, Any], principal: Principal) -> bool:
    """``Cache-Control: no-cache`` bypasses the cache, for admins only."""
    wants_fresh = "no-cache" in request.headers.get("cache-control", "").lower()
    if not wants_fresh:
        return True
    return ADMIN not in components_of(request.app.state).policy.permissions(principal)


def caller_of(request: Request[Any, Any, Any], principal: Principal) -> Caller:
    return Caller(principal.tenant, principal.subject, record_of(request.scope).request_id)
