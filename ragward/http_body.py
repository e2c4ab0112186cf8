"""JSON request bodies parsed only within a nesting limit, for every Litestar app.

msgspec (Litestar's JSON decoder) recurses once per nesting level, so a body of
100,000 ``[`` raises ``RecursionError`` — a 500 any client could cause. The
contract's bodies nest two levels deep; :class:`BoundedJsonRequest` measures the
depth of the raw bytes before handing them to the decoder and answers anything
deeper than :data:`MAX_JSON_DEPTH` with a 400 (:class:`~ragward.errors.BadRequest`).

The measurement is cheap: a body with fewer brackets than the limit cannot be
too deep (two ``bytes.count`` calls, the usual case); otherwise string literals
are cut out with one regular expression and the remaining brackets are counted.
Brackets inside a string never count, so ``{"question": "[[[..."}`` is fine.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from ragward.errors import BadRequest

MAX_JSON_DEPTH = 32
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``body``, read as JSON, nests arrays and objects deeper than ``limit``.

    Exact for well-formed JSON; malformed JSON (an unterminated string) may count
    brackets inside its broken string, which only turns one 400 into another.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", body).translate(None, delete=_NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


class BoundedJsonRequest(Request[Any, Any, Any]):
    """Litestar's request, whose ``json()`` refuses too deeply nested bodies first."""

    async def json(self) -> Any:
        if json_too_deep(await self.body()):
            raise BadRequest(f"JSON body nested deeper than {MAX_JSON_DEPTH} levels")
        return await super().json()
