"""Validators: checksums, ranges and numbering plans, on ASCII strings.

Luhn plus a known issuer prefix and length for cards; country length plus mod-97
for IBANs; province, birth date and the ISO 7064 MOD 11-2 check character (``X``
included) for CN IDs; area / group / serial rules for SSNs; octets 0-255 without
leading zeros for IPv4; group structure for IPv6; the split of an international
number into country code and national number. ``native/src/validate.rs`` ports
them; the registries they read are in :mod:`gateway.pii.tables`.
"""

from __future__ import annotations

import re

from gateway.pii.tables import CN_PROVINCES, IBAN_LENGTHS, TWO_DIGIT_COUNTRY_CODES

__all__ = [
    "card_brand_ok", "cn_id_check_ok", "cn_id_ok", "cn_id_shaped", "iban_ok", "ipv4_ok",
    "ipv6_value", "luhn_ok", "split_country_code", "ssn_ok",
]  # fmt: skip

_LUHN_DOUBLE = bytes.maketrans(b"0123456789", b"0246813579")  # digit sum of 2*d


def luhn_ok(digits: str) -> bool:
    """Luhn mod 10, summing ASCII codes in C: the 48s of "0" cancel out below."""
    b = digits.encode()
    return (sum(b[-1::-2]) + sum(b[-2::-2].translate(_LUHN_DOUBLE)) - 48 * len(b)) % 10 == 0


def card_brand_ok(d: str) -> bool:
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


_CN_ID_CHECK = "10X98765432"


# Last day of each month as two ASCII digits (February: 29, leap years checked apart).
_MONTH_LAST_DAY = {
    "01": "31", "02": "29", "03": "31", "04": "30", "05": "31", "06": "30",
    "07": "31", "08": "31", "09": "30", "10": "31", "11": "30", "12": "31",
}  # fmt: skip


def cn_id_shaped(s: str) -> bool:
    """The first 17 characters look like a CN resident ID: province code, birth date."""
    if s[:2] not in CN_PROVINCES:
        return False
    # ASCII digits (the patterns are re.ASCII): string compares, no int() and no date()
    last = _MONTH_LAST_DAY.get(s[10:12])
    if last is None or not "1900" <= s[6:10] <= "2100" or not "01" <= s[12:14] <= last:
        return False
    if last == "29" and s[12:14] == "29":
        year = int(s[6:10])
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return True


def cn_id_ok(s: str) -> bool:
    """18 chars: province code, birth date, ISO 7064 MOD 11-2 check character."""
    return cn_id_shaped(s) and cn_id_check_ok(s)


def cn_id_check_ok(s: str) -> bool:
    """The ISO 7064 MOD 11-2 check character of an 18-character CN ID."""
    # ISO 7064 MOD 11-2 weighs digit i (from the left) by 2**(17-i) mod 11. As 13 = 2
    # (mod 11), reading the 17 digits in base 13 gives that sum / 2, modulo 11.
    return _CN_ID_CHECK[2 * int(s[:17], 13) % 11] == s[17]


def ssn_ok(d: str) -> bool:
    area, group, serial = d[:3], d[3:5], d[5:]
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


_IBAN_LETTERS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


# A country code as the digits mod-97 reads it ("DE" -> "1314").
_IBAN_CC_DIGITS = {cc: str(ord(cc[0]) - 55) + str(ord(cc[1]) - 55) for cc in IBAN_LENGTHS}


def iban_ok(s: str) -> bool:
    if not s[2:4].isdigit():
        return False
    bban = s[4:]
    cc = _IBAN_CC_DIGITS.get(s[:2])
    if cc is not None and bban.isdigit():  # most countries: a numeric BBAN, no translate
        return int(bban + cc + s[2:4]) % 97 == 1
    return int((bban + s[:4]).translate(_IBAN_LETTERS)) % 97 == 1


def ipv6_value(v: str) -> str | None:
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
        if quad.count(".") != 3 or not ipv4_ok(quad):
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


def ipv4_ok(s: str) -> bool:
    for octet in s.split("."):
        if len(octet) > 1 and octet[0] == "0":
            return False
        if int(octet) > 255:
            return False
    return True


def split_country_code(digits: str) -> tuple[str, str]:
    """Country code and national number: 1 and 7 stand alone, the two-digit codes are
    listed, the rest of the 2x-9x space is three digits."""
    if digits[0] in "17":
        return digits[:1], digits[1:]
    if digits[:2] in TWO_DIGIT_COUNTRY_CODES:
        return digits[:2], digits[2:]
    return digits[:3], digits[3:]
