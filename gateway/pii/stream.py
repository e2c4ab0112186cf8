"""Exact redaction of a stream: text goes out as soon as no continuation can change it.

:meth:`RedactionSession.stream() <gateway.pii.RedactionSession.stream>` returns a
:class:`StreamRedaction`. Its contract, for any text and any way of cutting it into
chunks pushed in order:

(a) everything ``push`` and ``close`` return, concatenated, is exactly
    ``session.redact(text, enforce_block=False).text`` for the session in the same
    state (same placeholders, same numbering, same counts afterwards);
(b) no prefix of it ever holds a raw entity, or any part of one, that the redaction
    of the whole text hides: text is only sent once it is final.

What is held back, and why no more
----------------------------------
Only what could still grow into an entity, derived from the patterns
(:mod:`gateway.pii.holdback`): the earliest start of a reading that may still go on
is where something begins that is not final; everything before it goes out, except
that a hit is never cut (it is final as a whole, or held as a whole). In prose that
is the last word (it could still become an e-mail's local part), in a number its
last digit group and what could still join it.

A push that releases text rescans a window, not the whole answer: the window starts
``context()`` characters before a *sync point*, a place where no reading that started
before it went on through the next character. No match of any scan (numeric, e-mail,
secret, IPv6) spans a sync point, so every scan is at rest there and finds after it
what a scan of the whole text finds; the context covers the longest lookbehind and
the cue window. Committed text before the window is dropped, so memory and work per
push stay bounded by the text held back and the text since the last sync point. In
prose and numbers sync points come every few characters; text that has none for a
long stretch (``X@X@X@...``: an e-mail address could span every place) would make a
rescan per push quadratic, so a window past ``_SMALL_WINDOW`` characters is rescanned
only once an eighth of it is final: linear work, a hold of at most that eighth.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping

from gateway.pii.entities import Action, EntityType, Scanner
from gateway.pii.holdback import Readings, context, reach
from gateway.pii.placeholders import Placeholders

__all__ = ["StreamRedaction"]

_SMALL_WINDOW = 1024  # a window this long or shorter is rescanned at every release


class StreamRedaction:
    """Redacts text going out in pieces, exactly as the whole text would be redacted.

    ``push(chunk)`` returns what is now safe to send ('' if nothing), ``close()`` the
    rest; ``held`` is the number of raw characters received and not yet released.
    """

    __slots__ = (
        "_actions",
        "_closed",
        "_pending",
        "_placeholders",
        "_raw",
        "_readings",
        "_scanner",
    )

    def __init__(
        self,
        scanner: Scanner,
        actions: Mapping[EntityType, Action] | None,
        placeholders: Placeholders,
    ) -> None:
        self._scanner = scanner
        self._actions = actions  # None: every type is REDACT
        self._placeholders = placeholders  # the session's: numbering goes on across it
        self._readings = Readings(reach())
        self._raw = ""  # committed context, then the text not sent yet
        self._pending = 0  # index in _raw of the first character not sent
        self._closed = False

    @property
    def held(self) -> int:
        """Raw characters received and not yet released."""
        return len(self._raw) - self._pending

    def push(self, chunk: str) -> str:
        """Take the next piece of the text; return the redacted text now final."""
        if self._closed:
            raise ValueError("push() after close()")
        if not chunk:
            return ""
        index = len(self._raw)
        self._raw += chunk
        read = self._readings.read
        for i, c in enumerate(chunk, index):
            read(i, c)
        end = self._readings.open_start(len(self._raw))
        if end <= self._pending:
            return ""
        if len(self._raw) > _SMALL_WINDOW and end - self._pending < len(self._raw) >> 3:
            # A long window (text without a sync point): rescan it once an eighth of it
            # is final, not on every push, so the work stays linear in the text.
            return ""
        return self._release(end)

    def close(self) -> str:
        """End of the text: return the redacted rest."""
        if self._closed:
            return ""
        self._closed = True
        return self._release(len(self._raw)) if self.held else ""

    def _release(self, end: int) -> str:
        """Send the text up to ``end`` (or up to the hit that crosses it)."""
        raw = self._raw
        pending = self._pending
        hits = self._scanner.scan(raw) if raw.isascii() else self._scanner.detect(raw)
        out_hits = []
        for hit in hits:
            s, e = hit[0], hit[1]
            if s < pending:
                continue  # committed context: sent already
            if s >= end:
                break
            if e > end:
                end = s  # a hit is sent whole or not at all
                break
            out_hits.append(hit)
        if end <= pending:
            return ""
        out = self._placeholders.replace(raw[pending:end], out_hits, self._actions, pending)
        self._pending = end
        self._advance_sync()
        return out

    def _advance_sync(self) -> None:
        """Drop the committed text that no later scan needs: all but the context
        before the last sync point up to the text not sent."""
        syncs = self._readings.syncs
        n = bisect_right(syncs, self._pending)
        if n == 0:
            return
        base = syncs[n - 1] - context()
        del syncs[:n]
        if base > 0:
            self._raw = self._raw[base:]
            self._pending -= base
            self._readings.shift(base)
