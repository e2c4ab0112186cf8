"""Folding: NFKC for the characters that can become part of an entity, offsets kept exact.

ASCII text is used as is. Otherwise the characters whose NFKC form is ASCII
(full-width digits and letters, ``＋＠（）－．``, the ideographic space, circled and
mathematical digits, ligatures) are replaced by that form, one character at a time,
so offsets stay exact; the rare ones that become several characters (``⑩`` ->
``10``) are recorded and mapped back (:class:`OffsetMap`). These are the only
characters NFKC can turn into part of a match, since every entity is ASCII.

The table is built on first use (a scan of the code points below U+30000: about
30 ms); the native scanner is handed the same table.
"""

# ruff: noqa: RUF002  (docstrings show the full-width characters that get folded)

from __future__ import annotations

import re
import sys
import unicodedata
from bisect import bisect_right
from functools import cache

__all__ = ["Folding", "OffsetMap", "folding", "normalise"]


def _char_class(codepoints: list[int]) -> str:
    """A regex character class matching exactly ``codepoints`` (sorted), as ranges."""
    parts: list[str] = []
    i = 0
    while i < len(codepoints):
        j = i
        while j + 1 < len(codepoints) and codepoints[j + 1] == codepoints[j] + 1:
            j += 1
        lo, hi = codepoints[i], codepoints[j]
        parts.append(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}")
        i = j + 1
    return "[" + "".join(parts) + "]"


class Folding:
    """Per-character NFKC for the characters whose compatibility form is ASCII.

    Every entity is ASCII, so these are the only characters NFKC can turn into
    part of a match: full-width digits, letters and ``＋＠（）－．``, the
    ideographic space, circled and parenthesised digits, mathematical digits,
    ligatures. Characters whose form is pure punctuation that never occurs
    inside an entity (``，：；！``) are left alone, as are compatibility forms
    that are not ASCII (CJK compatibility ideographs, half-width katakana);
    neither can change what matches. Mapping per character keeps offsets exact.
    """

    __slots__ = ("astral", "bmp", "bmp_runs", "expanding", "runs", "table")

    def __init__(self) -> None:
        table: dict[int, str] = {}
        # Every code point with a compatibility mapping lies below U+30000.
        for cp in range(0x80, 0x30000):
            if 0xD800 <= cp < 0xE000:
                continue
            ch = chr(cp)
            norm = unicodedata.normalize("NFKC", ch)
            if norm != ch and norm.isascii() and _FOLD_USEFUL.search(norm):
                table[cp] = norm
        self.table = table
        self.bmp = re.compile(_char_class(sorted(cp for cp in table if cp < 0x10000)))
        self.astral = re.compile(_char_class(sorted(cp for cp in table if cp >= 0x10000)))
        self.runs = re.compile(_char_class(sorted(table)) + "+")
        # The same for text without astral characters: a BMP-only class is a bitmap
        # lookup per character, the full one a walk over its astral ranges.
        self.bmp_runs = re.compile(self.bmp.pattern + "+")
        self.expanding = frozenset(chr(cp) for cp, v in table.items() if len(v) != 1)


_FOLD_USEFUL = re.compile(r"[0-9A-Za-z@+\-.()_ ]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
# CPython stores a str with 1, 2 or 4 bytes a character, the widest it holds; a
# non-ASCII str smaller than a 4-byte one of its length has no astral character,
# which spares a regex pass over it. (Any other layout is only ever larger.)
_UCS4_BASE = sys.getsizeof("\U00010000") - 8  # size of a 4-byte str of length n: base + 4(n+1)


@cache
def folding() -> Folding:
    return Folding()


class OffsetMap:
    """Maps offsets in the normalised text back to the original.

    Only characters whose NFKC form is not exactly one character are stored,
    as regions ``[nstart, nend)`` (normalised) <- ``ostart`` (original, one
    char). Between regions the mapping is a shift by the accumulated growth.
    """

    __slots__ = ("_cum", "_nend", "_nstart", "_ostart")

    def __init__(self, regions: list[tuple[int, int, int]]) -> None:
        self._nstart = [r[0] for r in regions]
        self._nend = [r[1] for r in regions]
        self._ostart = [r[2] for r in regions]
        cum = [0]
        for ns, ne, _ in regions:
            cum.append(cum[-1] + (ne - ns - 1))
        self._cum = cum

    def start(self, p: int) -> int:
        i = bisect_right(self._nend, p)
        if i < len(self._nstart) and self._nstart[i] < p:
            return self._ostart[i]  # inside an expanded char: take the whole char
        return p - self._cum[i]

    def end(self, p: int) -> int:
        i = bisect_right(self._nend, p)
        if i < len(self._nstart) and self._nstart[i] < p:
            return self._ostart[i] + 1
        return p - self._cum[i]


def normalise(text: str) -> tuple[str, OffsetMap | None]:
    """Fold compatibility characters to ASCII (see :class:`Folding`).

    Returns the folded text and, only when some character became more than one
    (``⑩`` -> ``10``), the map from folded offsets back to the original.
    """
    if text.isascii():
        return text, None
    fold = folding()
    astral = sys.getsizeof(text) >= _UCS4_BASE + 4 * len(text) + 4 and (
        _ASTRAL.search(text) is not None
    )
    if fold.bmp.search(text) is None and (not astral or fold.astral.search(text) is None):
        return text, None
    table = fold.table
    expanding = fold.expanding
    parts: list[str] = []
    regions: list[tuple[int, int, int]] = []
    pos = shift = 0
    for m in (fold.runs if astral else fold.bmp_runs).finditer(text):
        s, e = m.span()
        parts.append(text[pos:s])
        run = m.group()
        if expanding.isdisjoint(run):
            parts.append(run.translate(table))
        else:
            for i, ch in enumerate(run):
                rep = table[ord(ch)]
                if len(rep) != 1:
                    ns = s + i + shift
                    regions.append((ns, ns + len(rep), s + i))
                    shift += len(rep) - 1
                parts.append(rep)
        pos = e
    parts.append(text[pos:])
    return "".join(parts), (OffsetMap(regions) if regions else None)
