"""What the PII package speaks in: entity types, hits, spans, scanners, the block error.

A *hit* is one detection as the scanners return it: ``(start, end, type, canonical
value)``, offsets into the text scanned. A :class:`Scanner` is the pair of functions
that find hits, with the name of the engine behind them; the redactor is handed one
(:func:`gateway.pii.python_scanner`, :func:`gateway.pii.native_scanner`), so every
caller, tests included, chooses its scanner by passing it, never by patching a module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ragward.errors import RagwardError
from ragward.pii_types import Action, EntityType

__all__ = ["Action", "EntityType", "Hit", "PiiBlocked", "Scanner", "Span"]

#: A detection: (start, end, type, canonical value) with offsets into the text it was
#: found in. The canonical value decides placeholders: two spellings of one address
#: (``2001:DB8::1``, ``2001:db8:0:0:0:0:0:1``) get one.
Hit = tuple[int, int, EntityType, str]


@dataclass(frozen=True, slots=True)
class Span:
    """One entity: ``text[start:end]`` of the ORIGINAL text is of type ``type``."""

    start: int
    end: int
    type: EntityType


@dataclass(frozen=True, slots=True)
class Scanner:
    """A PII scanner: both functions return hits sorted and non-overlapping.

    ``scan`` takes text that needs no folding (ASCII text, or text already folded);
    ``detect`` takes any text, folds it and reports offsets into the text given.
    ``engine`` names the implementation: ``"native"`` or ``"python"``.
    """

    engine: str
    scan: Callable[[str], list[Hit]]
    detect: Callable[[str], list[Hit]]


class PiiBlocked(RagwardError):
    """The text holds an entity whose type the policy blocks (HTTP 422)."""

    code = "pii_blocked"
    status = 422

    def __init__(self, entity_type: str) -> None:
        super().__init__(f"the request contains {entity_type}, which policy blocks")
        self.entity_type = entity_type
