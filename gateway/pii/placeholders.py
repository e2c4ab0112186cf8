"""A session's placeholders: one per value, numbered per type, and the running counts.

Redacting a text and streaming one both end here: given the hits of a text, the
text with each REDACT hit replaced by its placeholder. The same canonical value
always gets the same placeholder within a session (``<EMAIL_1>`` for the address
in the question and in the answer); a new value of a type gets the next number.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.pii.entities import Action, EntityType, Hit

__all__ = ["Placeholders"]

_NAMES = {t: t.value for t in EntityType}


class Placeholders:
    """The numbering state of one redaction session."""

    __slots__ = ("_by_value", "_numbers", "counts")

    def __init__(self) -> None:
        self._by_value: dict[tuple[EntityType, str], str] = {}
        self._numbers: dict[EntityType, int] = {}
        #: Entities found so far by type name, kept ones too.
        self.counts: dict[str, int] = {}

    @property
    def assigned(self) -> dict[tuple[EntityType, str], str]:
        """The placeholder given to each (type, canonical value) so far (a copy)."""
        return dict(self._by_value)

    def replace(
        self,
        text: str,
        hits: list[Hit],
        actions: Mapping[EntityType, Action] | None,
        offset: int = 0,
    ) -> str:
        """``text`` with ``hits`` (sorted, offsets into ``text`` plus ``offset``) replaced
        by their placeholders, and counted; ``actions`` None means every type is REDACT.
        Nothing is blocked here: the caller has checked that first."""
        by_value, numbers, counts = self._by_value, self._numbers, self.counts
        parts: list[str] = []
        pos = 0
        for s, e, typ, canon in hits:
            s -= offset
            name = _NAMES[typ]
            counts[name] = counts.get(name, 0) + 1
            if actions is not None and actions[typ] is Action.KEEP:
                continue
            key = (typ, canon)
            placeholder = by_value.get(key)
            if placeholder is None:
                n = numbers[typ] = numbers.get(typ, 0) + 1
                placeholder = by_value[key] = f"<{name}_{n}>"
            parts.append(text[pos:s])
            parts.append(placeholder)
            pos = e - offset
        parts.append(text[pos:])
        return "".join(parts)
