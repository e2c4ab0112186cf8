"""The redactor: one validated policy for every boundary, one session per request.

The gateway runs the question through a :class:`RedactionSession` before it is
cached, forwarded, logged or put in an event, and runs the answer and the sources
through the *same* session before they reach the client, so one value gets one
placeholder across the whole request::

    session = redactor.session()
    question = session.redact(raw_question).text      # "mail <EMAIL_1>"
    answer = session.redact(raw_answer).text          # same address -> <EMAIL_1>

Entity types and actions are configured per type: ``redact`` (typed numbered
placeholder), ``keep`` (detected and counted, left in place) or ``block``
(:class:`~gateway.pii.entities.PiiBlocked`, which the HTTP layer maps to 422 naming
the type). The scanner is the redactor's to be given (:class:`Scanner`); without
one it takes :func:`default_scanner`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from gateway.pii.entities import Action, EntityType, Hit, PiiBlocked, Scanner, Span
from gateway.pii.folding import folding
from gateway.pii.holdback import prepare
from gateway.pii.native import native_scanner
from gateway.pii.placeholders import Placeholders
from gateway.pii.reference import python_scanner
from gateway.pii.stream import StreamRedaction

__all__ = [
    "RedactionResult", "RedactionSession", "Redactor", "default_scanner", "sha256_hex",
]  # fmt: skip


def default_scanner() -> Scanner:
    """The native scanner when ``ragward_pii`` is installed, else the reference (same
    results, about a third as fast)."""
    return native_scanner() or python_scanner()


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text: what events and logs carry instead of raw text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RedactionResult:
    """The redacted text; the spans and counts behind it are built when asked for
    (the gateway reads only the text, and the session's running counts)."""

    __slots__ = ("_hits", "text")

    def __init__(self, text: str, hits: list[Hit]) -> None:
        self.text = text
        self._hits = hits

    @property
    def spans(self) -> list[Span]:
        """Every entity found, kept ones too: offsets into the input, sorted."""
        return [Span(s, e, typ) for s, e, typ, _ in self._hits]

    @property
    def counts(self) -> dict[str, int]:
        """Entities found by type name, kept ones too."""
        counts: dict[str, int] = {}
        for _, _, typ, _ in self._hits:
            counts[typ.value] = counts.get(typ.value, 0) + 1
        return counts

    def __repr__(self) -> str:
        return f"RedactionResult(text={self.text!r}, spans={self.spans!r})"


def _redact(
    text: str,
    scanner: Scanner,
    actions: Mapping[EntityType, Action] | None,
    placeholders: Placeholders,
    enforce_block: bool,
) -> RedactionResult:
    """Redact ``text``; ``actions`` None means every type is REDACT. ``placeholders``
    changes only once nothing is blocked."""
    hits = scanner.scan(text) if text.isascii() else scanner.detect(text)
    if not hits:
        return RedactionResult(text, hits)
    if actions is not None and enforce_block:
        for h in hits:
            if actions[h[2]] is Action.BLOCK:
                raise PiiBlocked(h[2].value)
    return RedactionResult(placeholders.replace(text, hits, actions), hits)


class RedactionSession:
    """Redaction state for one request: same value -> same placeholder, cumulative counts."""

    __slots__ = ("_actions", "_scanner", "counts", "placeholders")

    def __init__(self, scanner: Scanner, actions: Mapping[EntityType, Action] | None) -> None:
        self._scanner = scanner
        self._actions = actions  # None: every type is REDACT
        self.placeholders = Placeholders()
        #: Entities found in the session so far, by type name (kept ones too).
        self.counts = self.placeholders.counts

    def redact(self, text: str, *, enforce_block: bool = True) -> RedactionResult:
        """Replace every REDACT entity with its placeholder; raise PiiBlocked if a BLOCK
        entity is present (before anything in the session changes).

        ``enforce_block=False`` is for text going *out* (answers, sources): the request
        was already accepted, so a BLOCK type found there is redacted instead.
        """
        return _redact(text, self._scanner, self._actions, self.placeholders, enforce_block)

    def stream(self) -> StreamRedaction:
        """An incremental redaction of text going out (``enforce_block=False``), in this
        session: what it returns, concatenated, is exactly ``redact(whole text,
        enforce_block=False).text``, and nothing it returns is ever taken back
        (see :mod:`gateway.pii.stream`)."""
        return StreamRedaction(self._scanner, self._actions, self.placeholders)


class Redactor:
    """Finds and redacts PII; immutable and safe to share between requests."""

    __slots__ = ("_actions", "_scanner")

    def __init__(
        self, actions: Mapping[str, Action | str] | None = None, *, scanner: Scanner | None = None
    ) -> None:
        resolved = dict.fromkeys(EntityType, Action.REDACT)
        for name, action in (actions or {}).items():
            try:
                typ = EntityType(str(name).upper())
            except ValueError:
                known = ", ".join(EntityType)
                raise ValueError(f"unknown PII entity type {name!r}; known: {known}") from None
            try:
                resolved[typ] = Action(str(action).lower())
            except ValueError:
                raise ValueError(
                    f"unknown PII action {action!r} for {typ.value}; use redact, keep or block"
                ) from None
        # None when every type is REDACT: no per-entity action lookups then.
        plain = all(a is Action.REDACT for a in resolved.values())
        self._actions: dict[EntityType, Action] | None = None if plain else resolved
        self._scanner = scanner or default_scanner()
        folding()  # build the folding table now, not on the first request
        prepare()  # and the automaton streams read with, not on the first stream

    @property
    def engine(self) -> str:
        """Which scanner this redactor runs: ``"native"`` or ``"python"``."""
        return self._scanner.engine

    def find(self, text: str) -> list[Span]:
        """Entities in ``text``, sorted and non-overlapping, with offsets into ``text``."""
        return [Span(s, e, typ) for s, e, typ, _ in self._scanner.detect(text)]

    def session(self) -> RedactionSession:
        """A fresh per-request session."""
        return RedactionSession(self._scanner, self._actions)

    def redact(self, text: str) -> RedactionResult:
        """Redact one text in a session of its own."""
        return _redact(text, self._scanner, self._actions, Placeholders(), True)
