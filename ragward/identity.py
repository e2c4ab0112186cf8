"""What a caller's identity may look like: one rule for tokens and for ``ragward ingest``.

A subject, tenant or role ends up in HTTP headers (the forward to rag_core), log
lines, metric labels and audit records, so it must be non-empty printable text
within a length limit. The gateway applies this to every token; ``ragward ingest
--tenant`` applies the same rule, so an index can only be owned by a tenant some
token could name.
"""

from __future__ import annotations

from typing import TypeGuard

MAX_SUBJECT_CHARS = 256
MAX_TENANT_CHARS = 128
MAX_ROLES, MAX_ROLE_CHARS = 64, 128


def is_identity(value: object, max_chars: int) -> TypeGuard[str]:
    """Non-empty printable text: ``str.isprintable`` is False for every control (C0,
    C1), format, surrogate, private-use, unassigned and separator character except the
    ASCII space — so no CR/LF/NUL, U+2028/2029, bidi overrides or lone surrogates."""
    return isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable()
