"""PII detection and redaction: one validated redactor for every boundary.

The gateway runs the question through a :class:`RedactionSession` before it is
cached, forwarded, logged or put in an event, and runs the answer and the
sources through the *same* session before they reach the client, so one value
gets one placeholder across the whole request::

    session = redactor.session()
    question = session.redact(raw_question).text      # "mail <EMAIL_1>"
    answer = session.redact(raw_answer).text          # same address -> <EMAIL_1>

How a text is scanned
---------------------
1. **Fold.** ASCII text is used as is. Otherwise the characters whose NFKC
   form is ASCII (full-width digits and letters, ``＋＠（）－．``, the
   ideographic space, circled and mathematical digits, ligatures) are replaced
   by that form, one character at a time, so offsets stay exact; the rare
   ones that become several characters (``⑩`` -> ``10``) are recorded and
   mapped back. These are the only characters NFKC can turn into part of a
   match, since every entity is ASCII. Spans are reported on the original.
2. **Find candidates**, with regexes shaped so that the ``re`` engine skips
   ahead in C: one numeric regex (phones, cards, SSNs, CN IDs, IPv4, and
   IBANs, whose check digits are a digit anchor) starts with one character
   class and checks boundaries after it; e-mail is anchored on ``@``; IPv6 on
   its first colon; each secret on its rarest character (the ``k`` of
   ``sk-``, the ``J`` of ``eyJ``). Chinese has no word boundaries, so
   boundaries are lookarounds on ASCII letters and digits, never ``\\b``.
3. **Validate** each candidate: Luhn plus a known issuer prefix and length for
   cards; country length plus mod-97 for IBANs; province, birth date and the
   ISO 7064 MOD 11-2 check character (``X`` included) for CN IDs; area / group
   / serial rules for SSNs; octets 0-255 without leading zeros for IPv4; group
   structure for IPv6; for phones the NANP area and exchange codes, CN mobile
   ``1[3-9]``, CN area codes and number lengths, and for ``+CC`` / ``00CC``
   the national number length of the country code.

Decoys and the choices that keep them
-------------------------------------
- Order, invoice, tracking, ticket, ISBN numbers: a card or phone candidate
  right after such a label (``Order #``, ``invoice no.``, ``订单号``, ``运单``
  ...) is not PII. Cards must also start with a known issuer prefix, which
  drops ISBN-13s (978/979) and millisecond timestamps (1...).
- Where the digits alone could be anything, a cue right before them decides: a bare
  nine-digit run is a US SSN only after an SSN cue (``SSN``, ``S.S.N.``, ``social
  security number``, ``社会安全号`` ...), and a Luhn-valid 13-19 digit number whose
  issuer prefix is in no brand table is a card only after a card cue (``card``,
  ``refund to``, ``paid with``, ``卡号``, ``银行卡`` ...). Cue and number are in one
  clause: a few characters apart, no digit, line break or clause punctuation between.
- Bare ten-digit numbers are US phones only after a phone cue (``call``,
  ``phone``, ``tel``, ``hotline``, ``电话`` ...); with separators or
  parentheses (``(415) 555-0132``) they need no cue. CN mobiles (11 digits,
  ``1[3-9]``) need no cue.
- A dotted quad is not an IPv4 address when it is a version: right after
  ``version``, ``ver``, ``v``, ``build``, ``release``, ``firmware``, ``版本``, or
  after ``Name/`` (user agents), or part of a longer dotted run (OIDs,
  ``1.2.3.4.5``). A bare ``1.2.3.4`` with no such cue is an address.
- Numbers that fail their checksum stay; so do the digit groups inside them
  (a group after ``AT32 `` or ``2704 `` never starts a phone or a card), and
  an 18-digit number shaped like a CN ID (province, birth date) with a wrong
  check character is a mistyped ID, never a card.
- Dates, times, UUIDs, MAC addresses, money amounts and ISBNs fit no
  validated format (times and MACs are not valid IPv6).

Two scanners, one behaviour
---------------------------
All three steps exist twice. ``_detect_reference`` below is the specification,
in Python. ``ragward_pii`` (``native/``, Rust, built by ``make install``)
receives this folding table and these very patterns at import, runs the
patterns on PCRE2 with its JIT (every pattern is compiled with ``re.ASCII`` so
both engines read it the same way) and ports the validators; it is about three
times faster (``bench/pii.py``). ``tests/unit/test_redaction_native.py`` holds
the two to identical hits on the labelled corpus, on long mixed-width documents
and on generated text, and every test of ``test_redaction.py`` runs on both.
``ENGINE`` says which one this process uses; without the extension it is the
reference.

Entity types and actions are configured per type: ``redact`` (typed numbered
placeholder), ``keep`` (detected and counted, left in place) or ``block``
(:class:`PiiBlocked`, which the HTTP layer maps to 422 naming the type).

At import the regexes are compiled and, for the native scanner, the folding
table is built (a scan of the code points below U+30000: about 30 ms).
"""

# ruff: noqa: RUF002  (docstrings show the full-width characters that get folded)

from __future__ import annotations

import hashlib
import re
import sys
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from ragward.errors import RagwardError
from ragward.pii_types import Action, EntityType

if TYPE_CHECKING:
    from gateway.redaction_stream import StreamRedaction

__all__ = [
    "Action",
    "EntityType",
    "PiiBlocked",
    "RedactionResult",
    "RedactionSession",
    "Redactor",
    "Span",
    "sha256_hex",
]


@dataclass(frozen=True, slots=True)
class Span:
    """One entity: ``text[start:end]`` of the ORIGINAL text is of type ``type``."""

    start: int
    end: int
    type: EntityType


class PiiBlocked(RagwardError):
    """The text holds an entity whose type the policy blocks (HTTP 422)."""

    code = "pii_blocked"
    status = 422

    def __init__(self, entity_type: str) -> None:
        super().__init__(f"the request contains {entity_type}, which policy blocks")
        self.entity_type = entity_type


class RedactionResult:
    """The redacted text; the spans and counts behind it are built when asked for
    (the gateway reads only the text, and the session's running counts)."""

    __slots__ = ("_hits", "text")

    def __init__(self, text: str, hits: list[_Hit]) -> None:
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


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text: what events and logs carry instead of raw text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# A detection: (start, end, type, canonical value) with offsets into the text it was found in.
_Hit = tuple[int, int, EntityType, str]

# ---------------------------------------------------------------------------
# Normalisation with an exact offset map back to the original text
# ---------------------------------------------------------------------------


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


class _Folding:
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
def _folding() -> _Folding:
    return _Folding()


class _OffsetMap:
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


def _normalise(text: str) -> tuple[str, _OffsetMap | None]:
    """Fold compatibility characters to ASCII (see :class:`_Folding`).

    Returns the folded text and, only when some character became more than one
    (``⑩`` -> ``10``), the map from folded offsets back to the original.
    """
    if text.isascii():
        return text, None
    fold = _folding()
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
    return "".join(parts), (_OffsetMap(regions) if regions else None)


# ---------------------------------------------------------------------------
# Validators
# ---------------------------------------------------------------------------

_LUHN_DOUBLE = bytes.maketrans(b"0123456789", b"0246813579")  # digit sum of 2*d


def _luhn_ok(digits: str) -> bool:
    """Luhn mod 10, summing ASCII codes in C: the 48s of "0" cancel out below."""
    b = digits.encode()
    return (sum(b[-1::-2]) + sum(b[-2::-2].translate(_LUHN_DOUBLE)) - 48 * len(b)) % 10 == 0


def _card_brand_ok(d: str) -> bool:
    """Known issuer prefix (IIN) with a length that issuer uses (string compares: no int())."""
    n = len(d)
    c = d[0]
    if c == "4":  # Visa
        return n in (13, 16, 19)
    p2 = d[:2]
    if c == "5":
        if "51" <= p2 <= "55":  # Mastercard
            return n == 16
        return p2 in ("50", "56", "57", "58") and 13 <= n <= 19  # Maestro
    if c == "2":  # Mastercard 2-series, Mir
        p4 = d[:4]
        return ("2221" <= p4 <= "2720" or "2200" <= p4 <= "2204") and n == 16
    if c == "3":
        if p2 in ("34", "37"):  # Amex
            return n == 15
        if "3528" <= d[:4] <= "3589":  # JCB
            return 16 <= n <= 19
        if "300" <= d[:3] <= "305" or p2 in ("36", "38", "39"):  # Diners
            return 14 <= n <= 19
        return False
    if c == "6":  # Discover, UnionPay (62), Maestro (6x), RuPay (60, 65)
        return 16 <= n <= 19 or (p2 in ("63", "67") and n >= 13)
    if c == "8":  # UnionPay 81, RuPay 82
        return p2 in ("81", "82") and 16 <= n <= 19
    return False


# Province-level region codes (GB/T 2260): the first two digits of a CN resident ID.
_CN_PROVINCES = frozenset((
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82", "83",
))  # fmt: skip
_CN_ID_CHECK = "10X98765432"


# Last day of each month as two ASCII digits (February: 29, leap years checked apart).
_MONTH_LAST_DAY = {
    "01": "31", "02": "29", "03": "31", "04": "30", "05": "31", "06": "30",
    "07": "31", "08": "31", "09": "30", "10": "31", "11": "30", "12": "31",
}  # fmt: skip


def _cn_id_shaped(s: str) -> bool:
    """The first 17 characters look like a CN resident ID: province code, birth date."""
    if s[:2] not in _CN_PROVINCES:
        return False
    # ASCII digits (the patterns are re.ASCII): string compares, no int() and no date()
    last = _MONTH_LAST_DAY.get(s[10:12])
    if last is None or not "1900" <= s[6:10] <= "2100" or not "01" <= s[12:14] <= last:
        return False
    if last == "29" and s[12:14] == "29":
        year = int(s[6:10])
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return True


def _cn_id_ok(s: str) -> bool:
    """18 chars: province code, birth date, ISO 7064 MOD 11-2 check character."""
    return _cn_id_shaped(s) and _cn_id_check_ok(s)


def _cn_id_check_ok(s: str) -> bool:
    """The ISO 7064 MOD 11-2 check character of an 18-character CN ID."""
    # ISO 7064 MOD 11-2 weighs digit i (from the left) by 2**(17-i) mod 11. As 13 = 2
    # (mod 11), reading the 17 digits in base 13 gives that sum / 2, modulo 11.
    return _CN_ID_CHECK[2 * int(s[:17], 13) % 11] == s[17]


def _ssn_ok(d: str) -> bool:
    area, group, serial = d[:3], d[3:5], d[5:]
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


# Lengths from the SWIFT IBAN registry.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_BODY = {
    n: re.compile(rf"[A-Z]{{2}}\d{{2}}(?:[ ]?[A-Z0-9]){{{n - 4}}}", re.ASCII)
    for n in set(_IBAN_LENGTHS.values())
}
_IBAN_LETTERS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


# A country code as the digits mod-97 reads it ("DE" -> "1314").
_IBAN_CC_DIGITS = {cc: str(ord(cc[0]) - 55) + str(ord(cc[1]) - 55) for cc in _IBAN_LENGTHS}


def _iban_ok(s: str) -> bool:
    if not s[2:4].isdigit():
        return False
    bban = s[4:]
    cc = _IBAN_CC_DIGITS.get(s[:2])
    if cc is not None and bban.isdigit():  # most countries: a numeric BBAN, no translate
        return int(bban + cc + s[2:4]) % 97 == 1
    return int((bban + s[:4]).translate(_IBAN_LETTERS)) % 97 == 1


def _ipv6_value(v: str) -> str | None:
    """The address as eight hex groups if ``v`` (hex digits, colons, an optional
    dotted-quad tail) is a valid IPv6 address, else None."""
    v = v.lower()
    if "." not in v and "::" not in v:  # the full form: eight groups
        groups = v.split(":")
        if len(groups) != 8 or "" in groups or max(map(len, groups)) > 4:
            return None
        return _HEX_LEADING_ZEROS.sub("", v) if v[0] == "0" or ":0" in v else v
    tail: list[str] = []
    if "." in v:
        i = v.rfind(":")
        quad = v[i + 1 :]
        if quad.count(".") != 3 or not _ipv4_ok(quad):
            return None
        a, b, c, d = map(int, quad.split("."))
        tail = [f"{(a << 8) | b:x}", f"{(c << 8) | d:x}"]
        v = v[: i + 1] if v[: i + 1].endswith("::") else v[:i]
    if "::" in v:
        left, _, right = v.partition("::")
        if "::" in right:
            return None
        head = left.split(":") if left else []
        rest = right.split(":") if right else []
        missing = 8 - len(head) - len(rest) - len(tail)
        if missing < 1:
            return None
        groups = head + ["0"] * missing + rest
    else:
        groups = v.split(":")
        if len(groups) + len(tail) != 8:
            return None
    if "" in groups or max(map(len, groups)) > 4:
        return None
    # Groups are lower-case hex (the regex saw to that): drop their leading zeros.
    return _HEX_LEADING_ZEROS.sub("", ":".join(groups + tail))


_HEX_LEADING_ZEROS = re.compile(r"(?<![0-9a-f])0+(?=[0-9a-f])", re.ASCII)


def _ipv4_ok(s: str) -> bool:
    for octet in s.split("."):
        if len(octet) > 1 and octet[0] == "0":
            return False
        if int(octet) > 255:
            return False
    return True


# ---------------------------------------------------------------------------
# Phone numbering plans
# ---------------------------------------------------------------------------

# National significant number lengths for the country codes we know well
# (ITU-T E.164 national plans, trunk prefix excluded).
_CC_NSN: dict[str, tuple[int, int]] = {
    "1": (10, 10), "7": (10, 10), "20": (8, 10), "27": (9, 9), "30": (10, 10), "31": (9, 9),
    "32": (8, 9), "33": (9, 9), "34": (9, 9), "36": (8, 9), "39": (6, 11), "40": (9, 9),
    "41": (9, 9), "43": (7, 13), "44": (9, 10), "45": (8, 8), "46": (7, 10), "47": (8, 8),
    "48": (9, 9), "49": (6, 12), "51": (8, 9), "52": (10, 10), "53": (8, 8), "54": (10, 11),
    "55": (10, 11), "56": (9, 9), "57": (10, 10), "58": (10, 10), "60": (8, 10), "61": (9, 9),
    "62": (9, 12), "63": (10, 10), "64": (8, 10), "65": (8, 8), "66": (8, 9), "81": (9, 10),
    "82": (8, 10), "84": (9, 10), "86": (10, 11), "90": (10, 10), "91": (10, 10), "92": (9, 10),
    "93": (9, 9), "94": (9, 9), "95": (8, 10), "98": (10, 10), "212": (9, 9), "234": (8, 10),
    "254": (9, 9), "351": (9, 9), "353": (7, 9), "358": (6, 10), "380": (9, 9), "420": (9, 9),
    "852": (8, 8), "853": (8, 8), "886": (8, 9), "966": (9, 9), "971": (8, 9), "972": (8, 9),
}  # fmt: skip
# Two-digit country codes (the rest of the 2x-9x space is three digits).
_CC2 = frozenset((
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
    "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
))  # fmt: skip


def _split_cc(digits: str) -> tuple[str, str]:
    if digits[0] in "17":
        return digits[:1], digits[1:]
    if digits[:2] in _CC2:
        return digits[:2], digits[2:]
    return digits[:3], digits[3:]


# ---------------------------------------------------------------------------
# Context cues
# ---------------------------------------------------------------------------

_CTX = 28  # characters of left context a cue may span


def _reversed_words(words: str) -> str:
    """An alternation of the space-separated ``words``, each spelled backwards, longest first."""
    return "|".join(re.escape(w[::-1]) for w in sorted(words.split(), key=len, reverse=True))


# Cues are matched on the left context *reversed* (``_left``), anchored at its
# start, i.e. at the candidate: one attempt instead of a search over the window.
#
# A label right before a number saying it identifies a thing, not a person:
# "Order #", "invoice no. ", "Tracking number: ", "订单号:", "运单编号".
_NOT_PII_LABEL = re.compile(
    r"[\s#:\uff1a\uff03\-]*"  # separators, full-width colon and number sign included
    r"(?:(?:" + _reversed_words("no no. num number nr nr. id code") + r")(?![a-z])"
    r"[\s#:\uff1a\uff03.\-]*"
    r"|(?:" + _reversed_words("号码 号 码") + r"))?"
    r"(?:(?:"
    + _reversed_words(
        "order invoice inv tracking ticket ref reference receipt transaction txn isbn sku "
        "serial batch lot case booking confirmation shipment parcel account acct po"
    )
    + r")(?![a-z])"
    r"|"
    + _reversed_words("订单 单号 发票 流水 编号 工单 快递 运单 批次 序列 凭证 账单 合同 账号")
    + ")",
    re.ASCII,
)
# A cue that the bare number that follows is a phone number: "call me at ", "Tel: ", "电话".
_PHONE_CUE = re.compile(
    r"[^0-9\n]{0,14}?(?:(?:"
    + _reversed_words(
        "phone telephone tel call mobile cell cellphone fax text sms whatsapp contact reach dial "
        "hotline"
    )
    + r")(?![a-z])|"
    + _reversed_words("电话 手机 致电 拨打 联系 热线")
    + ")",
    re.ASCII,
)
# Cues that the bare number right after them is of one kind, where its digits alone
# could be anything. Between cue and number: a few characters of the same clause (no
# digit, line break or clause punctuation; Chinese packs a clause in fewer characters).
# As for phones, an English cue starts a word, and the number must carry no order label.
_CUE_GAP_EN = r"[^0-9\n,;!?\uff0c\u3002\uff1b\uff01\uff1f]{0,16}?"
_CUE_GAP_ZH = r"[^0-9\n,;!?\uff0c\u3002\uff1b\uff01\uff1f]{0,6}?"
# A nine-digit run is a US SSN only after an SSN cue: "SSN ", "SSN#: ", "S.S.N. ",
# "social security number is ", "Soc. Sec. No. ", "社保号".
_SSN_CUE = re.compile(
    _CUE_GAP_EN + r"(?:n\.?s\.?s"  # SSN, S.S.N.
    r"|(?:#|\.?on|rebmun)\s*\.?s\.?s"  # SS#, SS No., S.S. number
    r"|(?:ytiruces|\.?ces)[\s\-.]*(?:laicos|\.?cos))(?![a-z])"  # social security, soc. sec.
    "|" + _CUE_GAP_ZH + "(?:" + _reversed_words("社会安全 社会保障 社会保险号 社保号 社安") + ")",
    re.ASCII,
)
# A Luhn-valid 13-19 digit number is a card, whatever its issuer prefix, right after a
# card cue: "card ", "credit card number: ", "refund to ", "paid with ", "卡号", "银行卡".
_CARD_CUE = re.compile(
    _CUE_GAP_EN
    + "(?:"
    + _reversed_words(
        "card cards cc credit debit pan visa mastercard amex maestro unionpay discover jcb "
        "charge charged"
    )
    # "refund to", "refunded it to", "refund will go back to", "billed to"
    + r"|ot(?:\s+[a-z]+){0,3}?\s+(?:dnufer|sdnufer|dednufer|dellib)"
    + r"|htiw\s+(?:yap|diap|gniyap))(?![a-z])"  # "pay with", "paid with"
    + "|"
    + _CUE_GAP_ZH
    + "(?:"
    + _reversed_words("卡 银联 退款 退回 退还 退至 退到 付款")
    + ")",
    re.ASCII,
)
# A cue that a dotted quad is a version, not an address: "version ", "build ", "版本", "Chrome/".
_VERSION_CUE = re.compile(
    r"[\s:\uff1a.]*(?:"
    + _reversed_words("version ver v release rel build firmware fw kernel sdk")
    + r")(?![a-z])|[\s:\uff1a为是]*号?本版|/[a-z]",
    re.ASCII,
)


def _left(t: str, s: int) -> str:
    """Up to ``_CTX`` characters before ``s``, reversed and lower-cased."""
    if s > _CTX:
        return t[s - 1 : s - _CTX - 1 : -1].lower()
    return t[s - 1 :: -1].lower() if s else ""


# ---------------------------------------------------------------------------
# The numeric scanner
# ---------------------------------------------------------------------------
#
# One regex finds every digit-led candidate, and IBANs too (their check digits
# are a digit run right after two capitals). It is shaped for the `re` engine:
#
#   [0-9+(]        the first character is one class, so the engine scans for it in C
#   _LEFT          left-boundary lookbehinds, evaluated only after that character
#   \d*+           the rest of the digit run, possessive (no backtracking into it)
#   - | [ ] | \.   what follows the run: branches that start with a literal, which the
#                  engine skips without entering when the next character differs
#   (?<=\d{3}-)(?<!\d{4}-)   "the run was exactly 3 digits": fixed-width lookbehinds
#   (?P<shape>)    an empty group naming the shape, read back as ``m.lastgroup``
#
# A shape only says what a candidate looks like; ``_CHECKS`` validates it.

_B = r"(?![0-9A-Za-z_]|[.\-]\d)"  # right boundary
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"  # 0-255, no leading zero
# The digit run before the "." (already consumed) is an octet: one lookbehind per width.
_FIRST_OCTET = (
    r"(?:(?<=(?<!\d)25[0-5]\.)|(?<=(?<!\d)2[0-4]\d\.)|(?<=(?<!\d)1\d\d\.)"
    r"|(?<=(?<!\d)[1-9]\d\.)|(?<=(?<!\d)\d\.))"
)
_BX = r"(?![0-9A-Za-z_])"
_EXT = r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?"  # phone extension
_GROUPS = r"(?:[ .\-]?(?:\(\d{1,4}\)|\d++))*+"  # digit groups of an international number
_US_REST = r"[2-9]\d{2}[ .\-]\d{4}" + _EXT + _B  # exchange and line number
# Not inside a longer token, not after "123-" / "1.", and not after a 4-character group
# holding a digit ("AT32 ", "2704 "): inner groups of IBANs and card numbers that failed
# their checksum must not start a phone or a card of their own.
_LEFT = (
    r"(?<![0-9A-Za-z_].)(?<![0-9][.\-].)"
    r"(?<![0-9A-Z]{3}[0-9][ ].|[0-9][0-9A-Z]{3}[ ].)"
)


def _after_separator(sep: str, tag: str) -> str:
    """Shapes that continue a digit run with separator ``sep`` (already consumed).

    They are grouped by the length of the run (the run starts after a non-digit, see
    ``_LEFT``): one lookbehind per length, so a run of another length (a year, an
    amount) is turned away by one test instead of one per shape.
    """
    three = [  # a 3-digit run
        rf"\d{{2}}{sep}\d{{4}}{_B}(?P<ssn_{tag}>)",
        rf"(?<=1[3-9]\d{sep})\d{{4}}[ \-]?\d{{4}}{_B}(?P<mobile_{tag}>)",
        rf"(?<=[2-9]\d\d{sep})(?P<us_{tag}>){_US_REST}",
        rf"(?<=0\d\d{sep})\d{{3,4}}[ \-]?\d{{4}}{_B}(?P<land_{tag}>)",
    ]
    four = [  # a 4-digit run: four groups are a card's, three may be a CN landline
        rf"(?:\d{{4}}{sep}\d{{4}}{sep}\d{{1,4}}(?:{sep}\d{{1,3}})?|\d{{6}}{sep}\d{{4,5}})"
        rf"{_B}(?P<card_{tag}>)",
        # (only area codes _land can accept: "0128 2552 8408" may begin something else)
        rf"(?<=0(?:[2-9]\d|10)\d{sep})\d{{3,4}}[ \-]?\d{{4}}{_B}(?P<land4_{tag}>)",
    ]
    shapes = [
        rf"(?<=(?<!\d)\d{{3}}{sep})(?:" + "|".join(three) + ")",
        rf"(?<=(?<!\d)\d{{4}}{sep})(?:" + "|".join(four) + ")",
        rf"(?<=(?<!\d)1{sep})(?:\([2-9]\d{{2}}\)|[2-9]\d{{2}})[ .\-]?(?P<us1_{tag}>)" + _US_REST,
    ]
    if sep == "[ ]":
        shapes.append(r"(?<=(?<!\d)\d{6}[ ])\d{8}[ ]\d{3}[\dXx]" + _BX + "(?P<cnid_s>)")
    return sep + "(?:" + "|".join(shapes) + ")"


_DIGIT_RUN = (
    r"\d*+(?:"
    r"[Xx](?<=\d{17}[Xx])(?<!\d{18}[Xx])" + _BX + "(?P<cnid_x>)"
    "|"
    + _after_separator("-", "d")
    + "|"
    + _after_separator("[ ]", "s")
    + r"|\.(?<!\d{4}\.)(?:"  # every dotted shape starts with a run of 1-3 digits
    + _FIRST_OCTET
    + rf"{_OCTET}\.{_OCTET}\.{_OCTET}(?![0-9A-Za-z_]|\.\d)(?P<ipv4>)"
    r"|(?<=[2-9]\d\d\.)(?<!\d{4}\.)(?P<us_p>)"
    + _US_REST
    + r"|(?<=1\.)(?<!\d\d\.)[2-9]\d{2}\.(?P<us1_p>)"
    + _US_REST
    + ")"
    "|" + _B + r"(?:(?<=\d{10})(?:"  # the run stands alone: its length (9 or more) decides
    r"(?<=[1-8]\d{17})(?<!\d{19})(?P<run18>)"  # CN ID (province 11-83) or a card
    r"|(?<=\d{13})(?<!\d{20})(?P<cardrun>)"  # 13-19 digits
    r"|(?<=1[3-9]\d{9})(?<!\d{12})(?P<mobile_run>)"
    r"|(?<=[2-9]\d{2}[2-9]\d{6})(?<!\d{11})(?P<usbare>)"
    r")|(?<=\d{9})(?<!\d{10})(?P<ssnrun>)"  # an SSN after its cue
    "))"
)
_INTL_00 = r"(?<=0)0[1-9]\d*+" + _GROUPS + _EXT + "(?P<intl_0>)|"
_NUMERIC_SRC = (
    # Neither branch starts after a digit, a lower-case letter or "_": one test turns
    # away every digit inside a run or a hex / lower-case token.
    r"[0-9+(](?<![0-9a-z_].)(?:" + _LEFT + "(?:"
    # digit: "00" + country code, else a digit run
    r"(?<=\d)(?:" + _INTL_00 + _DIGIT_RUN + ")"
    # "+" + country code
    r"|(?<=\+)[1-9]\d*+" + _GROUPS + _EXT + "(?P<intl_p>)"
    # "(" : (+86) mobile, (010) landline, (415) US
    r"|(?<=\()(?:\+86\)[ \-]?1[3-9]\d(?:[ \-]?\d{4}){2}" + _B + "(?P<mobile_p>)"
    r"|0\d{2,3}\)[ ]?\d{3,4}[ \-]?\d{4}" + _B + "(?P<land_p>)"
    r"|[2-9]\d{2}\)[ .\-]?(?P<us_pp>)" + _US_REST + ")"
    ")"
    # IBAN: the anchor is the first check digit, after two capitals that start a token
    # or follow the label itself ("收款IBANDE89...")
    r"|(?<=[A-Z]{2}\d)(?:(?<![0-9A-Za-z_][A-Z]{2}\d)|(?<=IBAN[A-Z]{2}\d)|(?<=iban[A-Z]{2}\d))"
    r"\d(?:[ ]?[A-Z0-9]){11,34}+(?P<iban>)"
    ")"
)
_NUMERIC = re.compile(_NUMERIC_SRC, re.ASCII)
# The same without the "00" branch: tried when a "00..." candidate fails ("009-60-2850").
_NUMERIC_NO00 = re.compile(_NUMERIC_SRC.replace(_INTL_00, ""), re.ASCII)

_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}(?![A-Za-z0-9\-])",
    re.ASCII,
)
_EMAIL_LOCAL_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"
)
_EMAIL_LOCAL_RUN = re.compile(r"[A-Za-z0-9._%+\-]*", re.ASCII)

# Secrets. Each alternative starts at a character that is rare in prose (the "k" of
# "sk-", the "_" of "ghp_", the "J" of "eyJ" ...) so the engine skips ahead in C; the
# prefix before it is checked by lookbehind and the match is widened in Python.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_NOT_TOKEN = r"(?<![A-Za-z0-9_\-])"  # noqa: S105 (a regex, not a password)
_SECRET = re.compile(
    "(?:"
    + "|".join(
        (
            rf"k(?<={_NOT_TOKEN}sk)-[A-Za-z0-9_\-]{{20,}}",  # OpenAI, Anthropic (sk-proj-, sk-ant-)
            rf"_(?<={_NOT_TOKEN}[sr]k_)(?:live|test)_[A-Za-z0-9]{{16,}}",  # Stripe
            rf"A(?<={_NOT_TOKEN}A)(?:KIA|SIA)[0-9A-Z]{{16}}",  # AWS access key ids
            rf"A(?<={_NOT_TOKEN}A)Iza[0-9A-Za-z_\-]{{35}}",  # Google API keys
            rf"_(?<={_NOT_TOKEN}gh[pousr]_)[A-Za-z0-9]{{36,255}}",  # GitHub tokens
            rf"_(?<={_NOT_TOKEN}github_)pat_[A-Za-z0-9_]{{22,255}}",
            rf"x(?<={_NOT_TOKEN}x)ox[abprs]-[A-Za-z0-9\-]{{10,}}",  # Slack
            # JWT: header.payload.signature, both JSON parts starting '{"' = "eyJ"
            rf"J(?<={_NOT_TOKEN}eyJ)[A-Za-z0-9_\-]{{4,}}\.eyJ[A-Za-z0-9_\-]{{4,}}"
            r"\.[A-Za-z0-9_\-]*",
        )
    )
    + r")(?![A-Za-z0-9_\-])",  # the token ends here
    re.ASCII,
)

# IPv6. The match starts at the candidate's first colon (a literal: the engine skips
# to colons in C) and runs over hex digits and colons, optionally ending in a dotted
# quad; the up to four hex digits before that colon are added in Python. A label's
# colon right before an address (":fe80::1") starts a match too; the scanner skips it.
_IPV6 = re.compile(
    r":(?<![0-9A-Fa-f]{5}:)(?<!::)"
    r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*"  # a second colon within one group: "Note: " never enters
    rf"(?:(?<=:){_OCTET}(?:\.{_OCTET}){{3}})?"
    r"(?![0-9A-Za-z_:]|\.\d)",
    re.ASCII,
)
_HEX = frozenset("0123456789abcdefABCDEF")
_V6 = ("v6", "V6")
_IPV6_BEFORE = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:.")


# ---------------------------------------------------------------------------
# Validation of each numeric shape: (text, start, end) -> hit or None
# ---------------------------------------------------------------------------


def _digits_of(s: str) -> str:
    return s.replace(" ", "").replace("-", "").replace(".", "").replace("(", "").replace(")", "")


def _labelled(t: str, s: int) -> bool:
    """An order / invoice / tracking ... label ends right before ``s``."""
    return _NOT_PII_LABEL.match(_left(t, s)) is not None


def _card_ok(t: str, s: int, d: str) -> bool:
    """Luhn, and a known issuer prefix or a card cue before it, and no order label."""
    if not _luhn_ok(d):
        return False
    left = _left(t, s)
    if not _card_brand_ok(d) and _CARD_CUE.match(left) is None:
        return False
    return _NOT_PII_LABEL.match(left) is None


def _card(t: str, s: int, e: int) -> _Hit | None:
    d = t[s:e].replace(" ", "").replace("-", "")
    return (s, e, EntityType.CREDIT_CARD, d) if _card_ok(t, s, d) else None


def _cardrun(t: str, s: int, e: int) -> _Hit | None:
    d = t[s:e]
    return (s, e, EntityType.CREDIT_CARD, d) if _card_ok(t, s, d) else None


def _run18(t: str, s: int, e: int) -> _Hit | None:
    v = t[s:e]
    if _cn_id_shaped(v):  # a CN ID, or one with a typo in it: never a card
        return (s, e, EntityType.CN_ID, v) if _cn_id_check_ok(v) else None
    return _cardrun(t, s, e)


def _cnid(t: str, s: int, e: int) -> _Hit | None:
    v = t[s:e].replace(" ", "").upper()
    return (s, e, EntityType.CN_ID, v) if _cn_id_ok(v) else None


def _ipv4(t: str, s: int, e: int) -> _Hit | None:
    """Octets are checked by the regex; a version cue before it makes it a version."""
    if _VERSION_CUE.match(_left(t, s)) is None:
        return (s, e, EntityType.IPV4, t[s:e])
    return None


def _ssn(t: str, s: int, e: int) -> _Hit | None:
    d = t[s : s + 3] + t[s + 4 : s + 6] + t[s + 7 : e]
    return (s, e, EntityType.US_SSN, d) if _ssn_ok(d) else None


def _ssnrun(t: str, s: int, e: int) -> _Hit | None:
    """Nine digits without separators: an SSN only right after an SSN cue."""
    d = t[s:e]
    if not _ssn_ok(d):
        return None
    left = _left(t, s)
    if _SSN_CUE.match(left) is None or _NOT_PII_LABEL.match(left) is not None:
        return None
    return (s, e, EntityType.US_SSN, d)


def _mobile(t: str, s: int, e: int) -> _Hit | None:
    if _labelled(t, s):
        return None  # an 11-digit number after "order no." is the order's
    return (s, e, EntityType.PHONE, "+86" + _digits_of(t[s:e])[-11:])


def _mobile_prefixed(t: str, s: int, e: int) -> _Hit | None:
    return (s, e, EntityType.PHONE, "+86" + _digits_of(t[s:e])[-11:])


def _land(t: str, s: int, e: int) -> _Hit | None:
    """CN landline: 010 / 02x with 8-digit numbers, 0[3-9]xx with 7 or 8 digits."""
    d = _digits_of(t[s:e])
    if d[1] == "0" or (d[1] == "1" and d[2] != "0"):
        return None  # 010 is the only 01x area code
    subscriber = len(d) - (3 if d[1] in "12" else 4)
    if not (subscriber == 8 if d[1] in "12" else 7 <= subscriber <= 8) or _labelled(t, s):
        return None
    return (s, e, EntityType.PHONE, "+86" + d[1:])


def _us(t: str, s: int, e: int) -> _Hit | None:
    v = t[s:e]
    x = v.find("x")
    if x == -1:
        x = v.find("e")
    if _labelled(t, s):
        return None
    return (s, e, EntityType.PHONE, "+1" + _digits_of(v if x == -1 else v[:x])[-10:])


def _usbare(t: str, s: int, e: int) -> _Hit | None:
    left = _left(t, s)
    if _PHONE_CUE.match(left) is None or _NOT_PII_LABEL.match(left) is not None:
        return None
    return (s, e, EntityType.PHONE, "+1" + t[s:e])


_INTL_GROUP = re.compile(r"\(\d{1,4}\)|\d+", re.ASCII)


def _intl(t: str, s: int, e: int) -> _Hit | None:
    """``+CC ...`` / ``00CC ...``: keep the groups whose national length fits the plan."""
    body = t[s:e]
    x = body.find("x")
    end_body = e if x == -1 else s + x
    # Digit groups with their end offsets; "(0)" is a trunk prefix and not counted.
    groups: list[tuple[str, int]] = []
    for m in _INTL_GROUP.finditer(t[s:end_body]):
        g = m.group()
        if g != "(0)":
            groups.append((g.strip("()"), s + m.end()))
    first = groups[0][0]
    if t[s] == "0":
        first = first[2:]  # the "00" international prefix
        if not first:
            return None
    cc, national = _split_cc(first)
    plan = _CC_NSN.get(cc)
    if plan is None and t[s] == "0":
        return None  # "00" + unknown code: too easily an ordinary number
    lo, hi = plan if plan is not None else (6, 15 - len(cc))
    # The longest run of whole groups whose national number fits the plan.
    best, number = (0, national) if lo <= len(national) <= hi else (-1, "")
    for i in range(1, len(groups)):
        national += groups[i][0]
        if len(national) > hi:
            break
        if len(national) >= lo:
            best, number = i, national
    if best == -1:
        return None
    if cc == "1" and not "2" <= number[0] <= "9":
        return None
    end = groups[best][1]
    if best == len(groups) - 1 and x != -1:
        end = e  # the whole number is valid: keep its extension
    elif end < len(t) and t[end].isascii() and (t[end].isalnum() or t[end] == "_"):
        return None
    return (s, end, EntityType.PHONE, "+" + cc + number)


def _iban(t: str, s: int, e: int) -> _Hit | None:
    s -= 2  # the match starts at the first check digit
    length = _IBAN_LENGTHS.get(t[s : s + 2])
    if length is None:
        return None
    # The IBAN ends after its length-th character; what follows must not continue it.
    m = _IBAN_BODY[length].match(t, s)
    if m is None:
        return None
    end = m.end()
    if end < len(t) and t[end].isascii() and t[end].isalnum():
        return None
    value = m.group().replace(" ", "")
    return (s, end, EntityType.IBAN, value) if _iban_ok(value) else None


_CHECKS: dict[str, Callable[[str, int, int], _Hit | None]] = {
    "ssn": _ssn,
    "ssnrun": _ssnrun,
    "mobile": _mobile,
    "us": _us,
    "us1": _us,
    "land": _land,
    "land4": _land,
    "card": _card,
    "cardrun": _cardrun,
    "cnid": _cnid,
    "ipv4": _ipv4,
    "run18": _run18,
    "usbare": _usbare,
    "intl": _intl,
    "iban": _iban,
}
_SHAPE_CHECK = {
    name: (_mobile_prefixed if name == "mobile_p" else _CHECKS[name.split("_")[0]])
    for name in _NUMERIC.groupindex
}
# The same by group number (``m.lastindex``, cheaper than ``m.lastgroup``). Every group
# of _NUMERIC is a shape's, numbered from 1; slot 0 (the whole match) is never read.
_GROUP_NAMES = {index: name for name, index in _NUMERIC.groupindex.items()}
_INDEX_CHECK = [_SHAPE_CHECK[_GROUP_NAMES[max(i, 1)]] for i in range(_NUMERIC.groups + 1)]
_INTL_0 = _NUMERIC.groupindex["intl_0"]


# ---------------------------------------------------------------------------
# Scanners over the normalised text
# ---------------------------------------------------------------------------


def _email_local_start(t: str, at: int) -> int:
    """Start of the local part before the ``@`` at ``at``, or -1.

    The local part is the whole run of local-part characters before the ``@``: at most
    64 of them, not starting or ending with a dot. The run is measured on the
    reversed window, one anchored match instead of a search over 64 positions.
    """
    if at == 0:
        return -1
    lo = at - 64 if at > 64 else 0
    run = _EMAIL_LOCAL_RUN.match(t[at - 1 : lo - 1 : -1] if lo else t[at - 1 :: -1])
    n = run.end() if run is not None else 0  # (the pattern matches the empty string)
    s = at - n
    if n == 0 or (s == lo and s and t[s - 1] in _EMAIL_LOCAL_CHARS):
        return -1  # no local part, or a run longer than 64
    if t[s] == "." or t[at - 1] == ".":
        return -1
    return s


def _scan_email(t: str, hits: list[_Hit]) -> None:
    at = t.find("@")
    while at != -1:
        dm = _EMAIL_DOMAIN.match(t, at + 1)
        if dm is not None:
            s = _email_local_start(t, at)
            if s != -1:
                e = dm.end()
                hits.append((s, e, EntityType.EMAIL, t[s:e].lower()))
                at = t.find("@", e)
                continue
        at = t.find("@", at + 1)


def _scan_ipv6(t: str, hits: list[_Hit]) -> None:
    for m in _IPV6.finditer(t):
        c, e = m.span()  # c: the candidate's first colon
        s = c
        while s and t[s - 1] in _HEX:  # the first group, before that colon
            s -= 1
        if (s == c and e - c > 1 and t[c + 1] != ":") or (s < c and t[c - 2 : c] in _V6):
            s = c + 1  # a label's colon: "地址:fe80::1", "IPv6:fe80::1"
            if s == e or (c and t[c - 1] in _IPV6_BEFORE and t[c - 2 : c] not in _V6):
                continue
        elif s and t[s - 1] in _IPV6_BEFORE:
            continue  # inside a longer token
        v = t[s:e]
        value = _ipv6_value(v) if v.strip(":") else None
        if value is not None:
            hits.append((s, e, EntityType.IPV6, value))


def _scan_reference(t: str) -> list[_Hit]:
    """Entities in the normalised text ``t``: sorted, non-overlapping.

    The reference scanner; the native one (``ragward_pii``) does the same, faster.
    Streaming derives what it holds back from what these scans read ahead of a
    candidate: a new pattern in them is covered by itself, a new scan in Python that
    reads ahead must be listed in ``redaction_stream._reach``.
    """
    hits: list[_Hit] = []
    # Numeric entities and IBANs. Scanning resumes at the end of the entity, which can
    # be short of the match (an IBAN's length, a phone's trailing group), or at the end
    # of a rejected candidate: the left-boundary rules stop anything starting inside it.
    # One finditer goes on from each match's end; only a hit that ends elsewhere
    # starts a new one there.
    checks = _INDEX_CHECK
    finditer = _NUMERIC.finditer
    pos = 0
    while True:
        for m in finditer(t, pos):
            s, e = m.span()
            shape = m.lastindex
            hit = checks[shape](t, s, e)  # type: ignore[index]
            if hit is None and shape == _INTL_0:
                m2 = _NUMERIC_NO00.match(t, s)  # "00..." was no phone: try the other shapes
                if m2 is not None:
                    hit = _SHAPE_CHECK[m2.lastgroup](t, s, m2.end())  # type: ignore[index]
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
    sm = _SECRET.search(t)
    while sm is not None:
        s, e = sm.span()
        while s and t[s - 1] in _TOKEN_CHARS:  # back to the prefix the lookbehind saw
            s -= 1
        hits.append((s, e, EntityType.SECRET, t[s:e]))
        sm = _SECRET.search(t, e)
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


def _pcre2_source(pattern: str) -> str:
    """The pattern as PCRE2 spells it: ``\\x{ff1a}`` for ``\\uff1a``; nothing else differs."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", r"\\x{\1}", pattern)


def _native_scanner() -> Any:
    """``ragward_pii.Scanner`` over these patterns and this folding, or None if not
    installed."""
    try:
        from ragward_pii import Scanner
    except ImportError:
        return None
    patterns = {
        "numeric": _NUMERIC,
        "numeric_no00": _NUMERIC_NO00,
        "email_domain": _EMAIL_DOMAIN,
        "secret": _SECRET,
        "ipv6": _IPV6,
        "not_pii_label": _NOT_PII_LABEL,
        "phone_cue": _PHONE_CUE,
        "version_cue": _VERSION_CUE,
        "ssn_cue": _SSN_CUE,
        "card_cue": _CARD_CUE,
    }
    sources = {name: _pcre2_source(p.pattern) for name, p in patterns.items()}
    fold = {chr(cp): ascii_form for cp, ascii_form in _folding().table.items()}
    return Scanner(sources, {t.value: t for t in EntityType}, fold)


def _detect_reference(text: str) -> list[_Hit]:
    """Hits with offsets into ``text`` (the original), sorted and non-overlapping."""
    if text.isascii():
        return _scan_reference(text)
    norm, omap = _normalise(text)
    hits = _scan_reference(norm)
    if omap is None or not hits:
        return hits
    return [(omap.start(s), omap.end(e), typ, canon) for s, e, typ, canon in hits]


_native = _native_scanner()
#: Which scanner this process uses: "native" (the ``ragward_pii`` extension, built
#: by ``make install``) or "python" (the reference above, same results).
ENGINE = "python" if _native is None else "native"
# _scan: text already folded (ASCII text needs none); _detect: any text. The native
# methods return the EntityType members handed to the Scanner above.
_scan: Callable[[str], list[_Hit]] = _scan_reference if _native is None else _native.scan
_detect: Callable[[str], list[_Hit]] = _detect_reference if _native is None else _native.detect


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


_NAMES = {t: t.value for t in EntityType}


def _redact(
    text: str,
    actions: Mapping[EntityType, Action] | None,
    placeholders: dict[tuple[EntityType, str], str],
    numbers: dict[EntityType, int],
    total: dict[str, int],
    enforce_block: bool = True,
) -> RedactionResult:
    """Redact ``text``; ``actions`` None means every type is REDACT.

    ``placeholders``, ``numbers`` and ``total`` are the session's state and are
    updated in place, only once nothing is blocked.
    """
    hits = _scan(text) if text.isascii() else _detect(text)
    if not hits:
        return RedactionResult(text, hits)
    if actions is not None and enforce_block:
        for h in hits:
            if actions[h[2]] is Action.BLOCK:
                raise PiiBlocked(h[2].value)
    return RedactionResult(_apply(text, hits, actions, placeholders, numbers, total), hits)


def _apply(
    text: str,
    hits: list[_Hit],
    actions: Mapping[EntityType, Action] | None,
    placeholders: dict[tuple[EntityType, str], str],
    numbers: dict[EntityType, int],
    total: dict[str, int],
    offset: int = 0,
) -> str:
    """``text`` with ``hits`` (sorted, offsets into ``text`` plus ``offset``) replaced by
    their placeholders, counted in the session's state; nothing is blocked here."""
    parts: list[str] = []
    pos = 0
    for s, e, typ, canon in hits:
        s -= offset
        name = _NAMES[typ]
        total[name] = total.get(name, 0) + 1
        if actions is not None and actions[typ] is Action.KEEP:
            continue
        key = (typ, canon)
        placeholder = placeholders.get(key)
        if placeholder is None:
            n = numbers[typ] = numbers.get(typ, 0) + 1
            placeholder = placeholders[key] = f"<{name}_{n}>"
        parts.append(text[pos:s])
        parts.append(placeholder)
        pos = e - offset
    parts.append(text[pos:])
    return "".join(parts)


class RedactionSession:
    """Redaction state for one request: same value -> same placeholder, cumulative counts."""

    __slots__ = ("_actions", "_numbers", "_placeholders", "counts")

    def __init__(self, actions: Mapping[EntityType, Action] | None) -> None:
        self._actions = actions  # None: every type is REDACT
        self._placeholders: dict[tuple[EntityType, str], str] = {}
        self._numbers: dict[EntityType, int] = {}
        self.counts: dict[str, int] = {}

    def redact(self, text: str, *, enforce_block: bool = True) -> RedactionResult:
        """Replace every REDACT entity with its placeholder; raise PiiBlocked if a BLOCK
        entity is present (before anything in the session changes).

        ``enforce_block=False`` is for text going *out* (answers, sources): the request
        was already accepted, so a BLOCK type found there is redacted instead.
        """
        return _redact(
            text, self._actions, self._placeholders, self._numbers, self.counts, enforce_block
        )

    def stream(self) -> StreamRedaction:
        """An incremental redaction of text going out (``enforce_block=False``), in this
        session: what it returns, concatenated, is exactly ``redact(whole text,
        enforce_block=False).text``, and nothing it returns is ever taken back
        (see :mod:`gateway.redaction_stream`)."""
        from gateway.redaction_stream import StreamRedaction  # it builds on this module

        return StreamRedaction(self)


class Redactor:
    """Finds and redacts PII; immutable and safe to share between requests."""

    __slots__ = ("_actions",)

    def __init__(self, actions: Mapping[str, Action | str] | None = None) -> None:
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
        _folding()  # build the folding table now, not on the first request
        from gateway.redaction_stream import prepare  # it builds on this module

        prepare()  # and the automaton streams read with, not on the first stream

    def find(self, text: str) -> list[Span]:
        """Entities in ``text``, sorted and non-overlapping, with offsets into ``text``."""
        return [Span(s, e, typ) for s, e, typ, _ in _detect(text)]

    def session(self) -> RedactionSession:
        """A fresh per-request session."""
        return RedactionSession(self._actions)

    def redact(self, text: str) -> RedactionResult:
        """Redact one text in a session of its own."""
        return _redact(text, self._actions, {}, {}, {})
