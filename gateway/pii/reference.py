"""The reference scanner, in Python: the specification the native one is held to.

:func:`scan` runs the patterns over text that needs no folding and returns the hits,
sorted and non-overlapping; :func:`detect` folds first (:mod:`gateway.pii.folding`)
and maps the offsets back. ``native/`` (``ragward_pii``) does the same, about three
times faster (``bench/pii.py``); ``tests/unit/test_redaction_native.py`` holds the
two to identical hits.
"""

from __future__ import annotations

from functools import cache

from gateway.pii.entities import EntityType, Hit, Scanner
from gateway.pii.folding import normalise
from gateway.pii.patterns import (
    EMAIL_DOMAIN,
    EMAIL_LOCAL_CHARS,
    EMAIL_LOCAL_RUN,
    HEX,
    IPV6,
    IPV6_BEFORE,
    NUMERIC,
    NUMERIC_NO00,
    SECRET,
    TOKEN_CHARS,
    V6,
)
from gateway.pii.shapes import INDEX_CHECK, INTL_0, SHAPE_CHECK
from gateway.pii.validators import ipv6_value

__all__ = ["detect", "python_scanner", "scan"]


def _email_local_start(t: str, at: int) -> int:
    """Start of the local part before the ``@`` at ``at``, or -1.

    The local part is the whole run of local-part characters before the ``@``: at most
    64 of them, not starting or ending with a dot. The run is measured on the
    reversed window, one anchored match instead of a search over 64 positions.
    """
    if at == 0:
        return -1
    lo = at - 64 if at > 64 else 0
    run = EMAIL_LOCAL_RUN.match(t[at - 1 : lo - 1 : -1] if lo else t[at - 1 :: -1])
    n = run.end() if run is not None else 0  # (the pattern matches the empty string)
    s = at - n
    if n == 0 or (s == lo and s and t[s - 1] in EMAIL_LOCAL_CHARS):
        return -1  # no local part, or a run longer than 64
    if t[s] == "." or t[at - 1] == ".":
        return -1
    return s


def _scan_email(t: str, hits: list[Hit]) -> None:
    at = t.find("@")
    while at != -1:
        dm = EMAIL_DOMAIN.match(t, at + 1)
        if dm is not None:
            s = _email_local_start(t, at)
            if s != -1:
                e = dm.end()
                hits.append((s, e, EntityType.EMAIL, t[s:e].lower()))
                at = t.find("@", e)
                continue
        at = t.find("@", at + 1)


def _scan_ipv6(t: str, hits: list[Hit]) -> None:
    for m in IPV6.finditer(t):
        c, e = m.span()  # c: the candidate's first colon
        s = c
        while s and t[s - 1] in HEX:  # the first group, before that colon
            s -= 1
        if (s == c and e - c > 1 and t[c + 1] != ":") or (s < c and t[c - 2 : c] in V6):
            s = c + 1  # a label's colon: "地址:fe80::1", "IPv6:fe80::1"
            if s == e or (c and t[c - 1] in IPV6_BEFORE and t[c - 2 : c] not in V6):
                continue
        elif s and t[s - 1] in IPV6_BEFORE:
            continue  # inside a longer token
        v = t[s:e]
        value = ipv6_value(v) if v.strip(":") else None
        if value is not None:
            hits.append((s, e, EntityType.IPV6, value))


def scan(t: str) -> list[Hit]:
    """Entities in the normalised text ``t``: sorted, non-overlapping.

    Streaming derives what it holds back from what these scans read ahead of a
    candidate: a new pattern in them is covered by itself, a new scan in Python that
    reads ahead must be listed in :func:`gateway.pii.holdback.reach`.
    """
    hits: list[Hit] = []
    # Numeric entities and IBANs. Scanning resumes at the end of the entity, which can
    # be short of the match (an IBAN's length, a phone's trailing group), or at the end
    # of a rejected candidate: the left-boundary rules stop anything starting inside it.
    # One finditer goes on from each match's end; only a hit that ends elsewhere
    # starts a new one there.
    checks = INDEX_CHECK
    finditer = NUMERIC.finditer
    pos = 0
    while True:
        for m in finditer(t, pos):
            s, e = m.span()
            shape = m.lastindex
            hit = checks[shape](t, s, e)  # type: ignore[index]
            if hit is None and shape == INTL_0:
                m2 = NUMERIC_NO00.match(t, s)  # "00..." was no phone: try the other shapes
                if m2 is not None:
                    hit = SHAPE_CHECK[m2.lastgroup](t, s, m2.end())  # type: ignore[index]
            if hit is not None:
                hits.append(hit)
                if hit[1] != e:
                    pos = hit[1]
                    break
        else:
            break
    n = len(hits)  # numeric hits come out in order
    if "@" in t:
        _scan_email(t, hits)
    sm = SECRET.search(t)
    while sm is not None:
        s, e = sm.span()
        while s and t[s - 1] in TOKEN_CHARS:  # back to the prefix the lookbehind saw
            s -= 1
        hits.append((s, e, EntityType.SECRET, t[s:e]))
        sm = SECRET.search(t, e)
    # An IPv6 address has "::" or at least six colons (eight groups, or six and a quad).
    if "::" in t or t.count(":") >= 6:
        _scan_ipv6(t, hits)
    if len(hits) == n:
        return hits
    # Earliest first; at the same start the longest wins; anything overlapping is dropped.
    hits.sort()
    kept = [hits[0]]
    for h in hits:
        last = kept[-1]
        if h[0] >= last[1]:
            kept.append(h)
        elif h[0] == last[0] and h[1] > last[1]:
            kept[-1] = h  # e.g. an e-mail address whose local part is a phone number
    return kept


def detect(text: str) -> list[Hit]:
    """Hits with offsets into ``text`` (the original), sorted and non-overlapping."""
    if text.isascii():
        return scan(text)
    norm, omap = normalise(text)
    hits = scan(norm)
    if omap is None or not hits:
        return hits
    return [(omap.start(s), omap.end(e), typ, canon) for s, e, typ, canon in hits]


@cache
def python_scanner() -> Scanner:
    """The reference scanner (always available; the fallback without ``ragward_pii``)."""
    return Scanner("python", scan, detect)
