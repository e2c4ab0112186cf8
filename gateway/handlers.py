"""What every gateway route handler does first: find the components, authenticate the
caller (a ``before_request`` hook, before the body is parsed), authorise it, and name it
for the upstream; and last: hand the request's :class:`~gateway.outcome.Outcome` to the recorder and
turn it into the answer (or raise its error for the one error mapping to answer).

Shared by the contract's routes (:mod:`gateway.app`) and the OpenAI-compatible ones
(:mod:`gateway.openai.routes`), so neither imports the other.
"""

from __future__ import annotations

from typing import Any, NoReturn

from litestar import Request
from litestar.datastructures import State

from gateway.auth import Principal
from gateway.components import Components
from gateway.forward import Caller
from gateway.outcome import Outcome
from gateway.recorder import PRINCIPAL, report
from ragward import request_ids, tracing
from ragward.errors import Forbidden

ADMIN = "*"


def components_of(state: State) -> Components:
    components: Components = state.components
    return components


async def authenticated(request: Request[Any, Any, Any]) -> None:
    """A route's ``before_request`` hook: the bearer token is checked before the body is
    even parsed, so an unauthenticated caller learns nothing about the API's validation
    rules. (Not a guard: Litestar hands every guard a fresh copy of the route handler,
    ~35 µs per request here, that this check never reads.)"""
    gw = components_of(request.app.state)
    with tracing.span("authenticate"):
        principal = await gw.authenticator.authenticate(request.headers.get("authorization"))
    request.scope["state"][PRINCIPAL] = principal


def principal_of(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.scope["state"][PRINCIPAL]
    return principal


def authorise(
    request: Request[Any, Any, Any], permission: str | None, index: str | None = None
) -> Principal:
    """The caller, allowed ``permission`` (on ``index``); a refusal names the index."""
    principal = principal_of(request)
    if permission is not None:
        with tracing.span("authorise", attributes={"ragward.permission": permission}):
            try:
                components_of(request.app.state).policy.require(principal, permission, index)
            except Forbidden as exc:
                refuse(request, Outcome(index=index, error=exc))
    return principal


def use_cache(request: Request[Any, Any, Any], principal: Principal) -> bool:
    """``Cache-Control: no-cache`` bypasses the cache, for admins only."""
    wants_fresh = "no-cache" in request.headers.get("cache-control", "").lower()
    if not wants_fresh:
        return True
    return ADMIN not in components_of(request.app.state).policy.permissions(principal)


def caller_of(request: Request[Any, Any, Any], principal: Principal) -> Caller:
    return Caller(principal.tenant, principal.subject, request_ids.of(request.scope))


def concluded(request: Request[Any, Any, Any], outcome: Outcome) -> Outcome:
    """Hand ``outcome`` to the recorder; raise its error, if it has one."""
    if outcome.error is not None:
        refuse(request, outcome)
    report(request.scope, outcome)
    return outcome


def refuse(request: Request[Any, Any, Any], outcome: Outcome) -> NoReturn:
    """Hand a refusal to the recorder and raise its error: the error mapping answers
    it in the contract's shape (with the rate-limit headers, once admitted)."""
    report(request.scope, outcome)
    if outcome.error is None:
        raise TypeError("refuse() needs an outcome with an error")
    raise outcome.error


def rate_headers(outcome: Outcome) -> dict[str, str]:
    """The request-rate headers of an admitted request (none before admission)."""
    return outcome.admission.headers() if outcome.admission is not None else {}
