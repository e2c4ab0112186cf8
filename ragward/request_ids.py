"""Request ids: the one rule for accepting a client's ``X-Request-ID``, and where it lives.

The middleware that owns a request (the gateway's recorder, rag_core's echo) takes
the client's id when it is sane, else mints one, binds it into the ASGI scope with
:func:`bind` and sets the response header itself. Code below it — the error
mapping in :mod:`ragward.http_errors` — reads the id with :func:`of` and never
needs to know which middleware ran.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import Scope

HEADER = b"x-request-id"
# Printable, header-safe and long enough to be unique in practice: anything else a
# client sends is replaced, so no id can inject into a log line or a header.
_SANE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_ID_KEY = "request_id"
_ECHOED_KEY = "request_id_echoed"


def from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's id when it sent a sane one, else a new one."""
    for name, value in headers:
        if name == HEADER:
            candidate = value.decode("latin-1")
            if _SANE.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def bind(scope: Scope, request_id: str) -> None:
    """Record the request's id in the scope; the caller sets the response header."""
    state = scope.setdefault("state", {})
    state[_ID_KEY] = request_id
    state[_ECHOED_KEY] = True


def of(scope: Scope) -> str:
    """The id bound to this request, or "" outside such a middleware."""
    return str(scope.get("state", {}).get(_ID_KEY, ""))


def echoed(scope: Scope) -> bool:
    """Whether a middleware already puts the id on the response."""
    return bool(scope.get("state", {}).get(_ECHOED_KEY))
