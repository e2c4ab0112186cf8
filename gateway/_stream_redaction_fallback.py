"""TEMPORARY stand-in for ``RedactionSession.stream()`` — replace at merge.

The incremental, exact stream redactor (``RedactionSession.stream() ->
StreamRedaction`` with ``push(chunk) -> str``, ``close() -> str`` and ``held``)
is being built in :mod:`gateway.redaction` on another branch. Until it lands,
:func:`stream_redaction` falls back to :class:`HoldAll`: exact by construction
(it redacts the whole answer once, at the end) but it holds *everything* until
``close()``, so a streamed answer reaches the client in one piece at the end.
:func:`stream_redaction` already prefers the session's own ``stream()`` when it
exists, so the integrator only deletes this module and its one import.
"""

from __future__ import annotations

from typing import Protocol

from gateway.redaction import RedactionSession


class StreamRedaction(Protocol):
    held: int

    def push(self, chunk: str) -> str:
        """Redacted text that is safe to send now."""
        ...

    def close(self) -> str:
        """The rest, redacted."""
        ...


class HoldAll:
    """Exact but maximally late: nothing goes out before ``close()``."""

    def __init__(self, session: RedactionSession) -> None:
        self._session = session
        self._parts: list[str] = []
        self.held = 0

    def push(self, chunk: str) -> str:
        self._parts.append(chunk)
        self.held += len(chunk)
        return ""

    def close(self) -> str:
        text = "".join(self._parts)
        self._parts.clear()
        self.held = 0
        return self._session.redact(text, enforce_block=False).text


def stream_redaction(session: RedactionSession) -> StreamRedaction:
    stream = getattr(session, "stream", None)
    if stream is not None:
        redaction: StreamRedaction = stream()
        return redaction
    return HoldAll(session)
