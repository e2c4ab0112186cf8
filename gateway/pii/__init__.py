"""PII detection and redaction: one validated redactor for every boundary.

The public face; the parts behind it, one job each::

    entities      Span, Hit, Scanner, PiiBlocked (and Action, EntityType)
    folding       NFKC to ASCII per character, with an exact offset map back
    tables        the registries: IBAN lengths, E.164 national plans, CN provinces
    validators    checksums and ranges (Luhn, mod-97, MOD 11-2, octets, SSN rules)
    patterns      the regexes both scanners run, and the cues to their left
    shapes        each numeric candidate validated into a hit, or nothing
    reference     the Python scanner: the specification
    native        the Rust scanner (``ragward_pii``), handed the data above
    placeholders  a session's numbering: one placeholder per value
    redactor      Redactor, RedactionSession, RedactionResult
    holdback      the automaton that says which unsent text could still change
    stream        StreamRedaction: exact redaction of text that arrives in chunks

How a text is scanned: **fold** (only characters whose NFKC form is ASCII can become
part of an entity, since every entity is ASCII), **find candidates** with regexes
shaped so that the ``re`` engine skips ahead in C, **validate** each candidate
(checksums, registries, cues). The two scanners give identical hits
(``tests/unit/test_redaction_native.py``); a :class:`Redactor` is handed the one to
use (``scanner=``) and takes :func:`default_scanner` otherwise::

    Redactor(settings.pii_actions)                            # native if installed
    Redactor(settings.pii_actions, scanner=python_scanner())  # the reference
"""

from gateway.pii.entities import Action, EntityType, PiiBlocked, Scanner, Span
from gateway.pii.native import native_scanner
from gateway.pii.redactor import (
    RedactionResult,
    RedactionSession,
    Redactor,
    default_scanner,
    sha256_hex,
)
from gateway.pii.reference import python_scanner
from gateway.pii.stream import StreamRedaction

__all__ = [
    "Action",
    "EntityType",
    "PiiBlocked",
    "RedactionResult",
    "RedactionSession",
    "Redactor",
    "Scanner",
    "Span",
    "StreamRedaction",
    "default_scanner",
    "native_scanner",
    "python_scanner",
    "sha256_hex",
]
