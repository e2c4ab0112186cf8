"""Numeric shapes, validated: each candidate of the numeric pattern becomes a hit or nothing.

The numeric pattern (:data:`gateway.pii.patterns.NUMERIC`) names the shape a
candidate has with an empty group (``ssn_d``, ``card_s``, ``intl_p`` ...); here each
shape has its check ``(text, start, end) -> hit or None``: the validators, the cues
to the left, and for international numbers the national plan, which may end the hit
short of the match. Numbers that fail their checksum stay; so do the digit groups
inside them (a group after ``AT32 `` or ``2704 `` never starts a phone or a card, a
rule of the pattern), and an 18-digit number shaped like a CN ID (province, birth
date) with a wrong check character is a mistyped ID, never a card.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.pii.entities import EntityType, Hit
from gateway.pii.patterns import (
    CARD_CUE,
    IBAN_BODY,
    NOT_PII_LABEL,
    NUMERIC,
    PHONE_CUE,
    SSN_CUE,
    VERSION_CUE,
    left_context,
)
from gateway.pii.tables import IBAN_LENGTHS, NATIONAL_LENGTHS
from gateway.pii.validators import (
    card_brand_ok,
    cn_id_check_ok,
    cn_id_ok,
    cn_id_shaped,
    iban_ok,
    luhn_ok,
    split_country_code,
    ssn_ok,
)

__all__ = ["INDEX_CHECK", "INTL_0", "SHAPE_CHECK"]


def _digits_of(s: str) -> str:
    return s.replace(" ", "").replace("-", "").replace(".", "").replace("(", "").replace(")", "")


def _labelled(t: str, s: int) -> bool:
    """An order / invoice / tracking ... label ends right before ``s``."""
    return NOT_PII_LABEL.match(left_context(t, s)) is not None


def _card_ok(t: str, s: int, d: str) -> bool:
    """Luhn, and a known issuer prefix or a card cue before it, and no order label."""
    if not luhn_ok(d):
        return False
    left = left_context(t, s)
    if not card_brand_ok(d) and CARD_CUE.match(left) is None:
        return False
    return NOT_PII_LABEL.match(left) is None


def _card(t: str, s: int, e: int) -> Hit | None:
    d = t[s:e].replace(" ", "").replace("-", "")
    return (s, e, EntityType.CREDIT_CARD, d) if _card_ok(t, s, d) else None


def _cardrun(t: str, s: int, e: int) -> Hit | None:
    d = t[s:e]
    return (s, e, EntityType.CREDIT_CARD, d) if _card_ok(t, s, d) else None


def _run18(t: str, s: int, e: int) -> Hit | None:
    v = t[s:e]
    if cn_id_shaped(v):  # a CN ID, or one with a typo in it: never a card
        return (s, e, EntityType.CN_ID, v) if cn_id_check_ok(v) else None
    return _cardrun(t, s, e)


def _cnid(t: str, s: int, e: int) -> Hit | None:
    v = t[s:e].replace(" ", "").upper()
    return (s, e, EntityType.CN_ID, v) if cn_id_ok(v) else None


def _ipv4(t: str, s: int, e: int) -> Hit | None:
    """Octets are checked by the regex; a version cue before it makes it a version."""
    if VERSION_CUE.match(left_context(t, s)) is None:
        return (s, e, EntityType.IPV4, t[s:e])
    return None


def _ssn(t: str, s: int, e: int) -> Hit | None:
    d = t[s : s + 3] + t[s + 4 : s + 6] + t[s + 7 : e]
    return (s, e, EntityType.US_SSN, d) if ssn_ok(d) else None


def _ssnrun(t: str, s: int, e: int) -> Hit | None:
    """Nine digits without separators: an SSN only right after an SSN cue."""
    d = t[s:e]
    if not ssn_ok(d):
        return None
    left = left_context(t, s)
    if SSN_CUE.match(left) is None or NOT_PII_LABEL.match(left) is not None:
        return None
    return (s, e, EntityType.US_SSN, d)


def _mobile(t: str, s: int, e: int) -> Hit | None:
    if _labelled(t, s):
        return None  # an 11-digit number after "order no." is the order's
    return (s, e, EntityType.PHONE, "+86" + _digits_of(t[s:e])[-11:])


def _mobile_prefixed(t: str, s: int, e: int) -> Hit | None:
    return (s, e, EntityType.PHONE, "+86" + _digits_of(t[s:e])[-11:])


def _land(t: str, s: int, e: int) -> Hit | None:
    """CN landline: 010 / 02x with 8-digit numbers, 0[3-9]xx with 7 or 8 digits."""
    d = _digits_of(t[s:e])
    if d[1] == "0" or (d[1] == "1" and d[2] != "0"):
        return None  # 010 is the only 01x area code
    subscriber = len(d) - (3 if d[1] in "12" else 4)
    if not (subscriber == 8 if d[1] in "12" else 7 <= subscriber <= 8) or _labelled(t, s):
        return None
    return (s, e, EntityType.PHONE, "+86" + d[1:])


def _us(t: str, s: int, e: int) -> Hit | None:
    v = t[s:e]
    x = v.find("x")
    if x == -1:
        x = v.find("e")
    if _labelled(t, s):
        return None
    return (s, e, EntityType.PHONE, "+1" + _digits_of(v if x == -1 else v[:x])[-10:])


def _usbare(t: str, s: int, e: int) -> Hit | None:
    left = left_context(t, s)
    if PHONE_CUE.match(left) is None or NOT_PII_LABEL.match(left) is not None:
        return None
    return (s, e, EntityType.PHONE, "+1" + t[s:e])


_INTL_GROUP = re.compile(r"\(\d{1,4}\)|\d+", re.ASCII)


def _intl(t: str, s: int, e: int) -> Hit | None:
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
    cc, national = split_country_code(first)
    plan = NATIONAL_LENGTHS.get(cc)
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


def _iban(t: str, s: int, e: int) -> Hit | None:
    s -= 2  # the match starts at the first check digit
    length = IBAN_LENGTHS.get(t[s : s + 2])
    if length is None:
        return None
    # The IBAN ends after its length-th character; what follows must not continue it.
    m = IBAN_BODY[length].match(t, s)
    if m is None:
        return None
    end = m.end()
    if end < len(t) and t[end].isascii() and t[end].isalnum():
        return None
    value = m.group().replace(" ", "")
    return (s, end, EntityType.IBAN, value) if iban_ok(value) else None


_CHECKS: dict[str, Callable[[str, int, int], Hit | None]] = {
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
SHAPE_CHECK = {
    name: (_mobile_prefixed if name == "mobile_p" else _CHECKS[name.split("_")[0]])
    for name in NUMERIC.groupindex
}
# The same by group number (``m.lastindex``, cheaper than ``m.lastgroup``). Every group
# of NUMERIC is a shape's, numbered from 1; slot 0 (the whole match) is never read.
_GROUP_NAMES = {index: name for name, index in NUMERIC.groupindex.items()}
INDEX_CHECK = [SHAPE_CHECK[_GROUP_NAMES[max(i, 1)]] for i in range(NUMERIC.groups + 1)]
INTL_0 = NUMERIC.groupindex["intl_0"]
