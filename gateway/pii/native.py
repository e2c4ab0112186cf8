"""The native scanner: ``ragward_pii`` (``native/``, Rust) built from this package's data.

Python keeps one copy of everything the scanner decides with and hands it over when
the scanner is built: the patterns (as PCRE2 spells them), the folding table, the
registries of :mod:`gateway.pii.tables` and the cue window. Rust converts each once,
at construction, into the lookups it runs on (compiled JIT regexes, bitmaps, arrays
indexed by country code); it ports only the code: the validators and the scans
between matches. PCRE2 runs the patterns with its JIT (every pattern is ``re.ASCII``,
so both engines read it the same way).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from gateway.pii.entities import EntityType, Hit, Scanner
from gateway.pii.folding import folding
from gateway.pii.patterns import (
    CARD_CUE,
    CUE_WINDOW,
    EMAIL_DOMAIN,
    IPV6,
    NOT_PII_LABEL,
    NUMERIC,
    NUMERIC_NO00,
    PHONE_CUE,
    SECRET,
    SSN_CUE,
    VERSION_CUE,
)
from gateway.pii.tables import (
    CN_PROVINCES,
    IBAN_LENGTHS,
    NATIONAL_LENGTHS,
    TWO_DIGIT_COUNTRY_CODES,
)

__all__ = ["native_scanner", "tables"]

# The patterns by the names native/src/scan.rs asks for.
_PATTERNS = {
    "numeric": NUMERIC,
    "numeric_no00": NUMERIC_NO00,
    "email_domain": EMAIL_DOMAIN,
    "secret": SECRET,
    "ipv6": IPV6,
    "not_pii_label": NOT_PII_LABEL,
    "phone_cue": PHONE_CUE,
    "version_cue": VERSION_CUE,
    "ssn_cue": SSN_CUE,
    "card_cue": CARD_CUE,
}


def _pcre2_source(pattern: str) -> str:
    """The pattern as PCRE2 spells it: ``\\x{ff1a}`` for ``\\uff1a``; nothing else differs."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", r"\\x{\1}", pattern)


def tables() -> dict[str, Any]:
    """The registries and constants the native validators read, as ``Scanner`` takes them."""
    return {
        "iban_lengths": dict(IBAN_LENGTHS),
        "national_lengths": dict(NATIONAL_LENGTHS),
        "two_digit_country_codes": sorted(TWO_DIGIT_COUNTRY_CODES),
        "cn_provinces": sorted(CN_PROVINCES),
        "cue_window": CUE_WINDOW,
    }


@cache
def native_scanner() -> Scanner | None:
    """The compiled scanner over this package's patterns, folding and tables; None when
    ``ragward_pii`` is not installed (``make install`` builds it)."""
    try:
        from ragward_pii import Scanner as Compiled
    except ImportError:
        return None
    sources = {name: _pcre2_source(p.pattern) for name, p in _PATTERNS.items()}
    fold = {chr(cp): ascii_form for cp, ascii_form in folding().table.items()}
    compiled = Compiled(sources, {t.value: t for t in EntityType}, fold, tables())
    # The compiled methods return the EntityType members handed over above.
    scan = cast("Callable[[str], list[Hit]]", compiled.scan)
    detect = cast("Callable[[str], list[Hit]]", compiled.detect)
    return Scanner("native", scan, detect)
