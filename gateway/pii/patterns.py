"""The patterns: every regex both scanners run, and the cues read to the left of a match.

Regexes are shaped so that the ``re`` engine skips ahead in C: one numeric regex
(phones, cards, SSNs, CN IDs, IPv4, and IBANs, whose check digits are a digit
anchor) starts with one character class and checks boundaries after it; e-mail is
anchored on ``@``; IPv6 on its first colon; each secret on its rarest character
(the ``k`` of ``sk-``, the ``J`` of ``eyJ``). Chinese has no word boundaries, so
boundaries are lookarounds on ASCII letters and digits, never ``\\b``. Every pattern
is compiled with ``re.ASCII``, so PCRE2 (the native scanner, which is handed these
very sources) reads it as ``re`` does.

Decoys and the cues that keep them
----------------------------------
- Order, invoice, tracking, ticket, ISBN numbers: a card or phone candidate right
  after such a label (``Order #``, ``invoice no.``, ``订单号``, ``运单`` ...) is not
  PII (:data:`NOT_PII_LABEL`).
- Where the digits alone could be anything, a cue right before them decides: a bare
  nine-digit run is a US SSN only after an SSN cue (``SSN``, ``S.S.N.``, ``social
  security number``, ``社会安全号`` ...), and a Luhn-valid 13-19 digit number whose
  issuer prefix is in no brand table is a card only after a card cue (``card``,
  ``refund to``, ``paid with``, ``卡号``, ``银行卡`` ...). Cue and number are in one
  clause: a few characters apart, no digit, line break or clause punctuation between.
- Bare ten-digit numbers are US phones only after a phone cue (``call``, ``phone``,
  ``tel``, ``hotline``, ``电话`` ...); with separators or parentheses (``(415)
  555-0132``) they need no cue. CN mobiles (11 digits, ``1[3-9]``) need no cue.
- A dotted quad is not an IPv4 address when it is a version: right after
  ``version``, ``ver``, ``v``, ``build``, ``release``, ``firmware``, ``版本``, or after
  ``Name/`` (user agents), or part of a longer dotted run (OIDs, ``1.2.3.4.5``).
"""

from __future__ import annotations

import re

from gateway.pii.tables import IBAN_LENGTHS

CUE_WINDOW = 28  # characters of left context a cue may span


def _reversed_words(words: str) -> str:
    """An alternation of the space-separated ``words``, each spelled backwards, longest first."""
    return "|".join(re.escape(w[::-1]) for w in sorted(words.split(), key=len, reverse=True))


# Cues are matched on the left context *reversed* (:func:`left_context`), anchored at its
# start, i.e. at the candidate: one attempt instead of a search over the window.
#
# A label right before a number saying it identifies a thing, not a person:
# "Order #", "invoice no. ", "Tracking number: ", "订单号:", "运单编号".
NOT_PII_LABEL = re.compile(
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
PHONE_CUE = re.compile(
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
SSN_CUE = re.compile(
    _CUE_GAP_EN + r"(?:n\.?s\.?s"  # SSN, S.S.N.
    r"|(?:#|\.?on|rebmun)\s*\.?s\.?s"  # SS#, SS No., S.S. number
    r"|(?:ytiruces|\.?ces)[\s\-.]*(?:laicos|\.?cos))(?![a-z])"  # social security, soc. sec.
    "|" + _CUE_GAP_ZH + "(?:" + _reversed_words("社会安全 社会保障 社会保险号 社保号 社安") + ")",
    re.ASCII,
)
# A Luhn-valid 13-19 digit number is a card, whatever its issuer prefix, right after a
# card cue: "card ", "credit card number: ", "refund to ", "paid with ", "卡号", "银行卡".
CARD_CUE = re.compile(
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
VERSION_CUE = re.compile(
    r"[\s:\uff1a.]*(?:"
    + _reversed_words("version ver v release rel build firmware fw kernel sdk")
    + r")(?![a-z])|[\s:\uff1a为是]*号?本版|/[a-z]",
    re.ASCII,
)


def left_context(t: str, s: int) -> str:
    """Up to ``CUE_WINDOW`` characters before ``s``, reversed and lower-cased."""
    if s > CUE_WINDOW:
        return t[s - 1 : s - CUE_WINDOW - 1 : -1].lower()
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
# A shape only says what a candidate looks like; :mod:`gateway.pii.shapes` validates it.

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
NUMERIC = re.compile(_NUMERIC_SRC, re.ASCII)
# The same without the "00" branch: tried when a "00..." candidate fails ("009-60-2850").
NUMERIC_NO00 = re.compile(_NUMERIC_SRC.replace(_INTL_00, ""), re.ASCII)

EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}(?![A-Za-z0-9\-])",
    re.ASCII,
)
EMAIL_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
EMAIL_LOCAL_RUN = re.compile(r"[A-Za-z0-9._%+\-]*", re.ASCII)

# Secrets. Each alternative starts at a character that is rare in prose (the "k" of
# "sk-", the "_" of "ghp_", the "J" of "eyJ" ...) so the engine skips ahead in C; the
# prefix before it is checked by lookbehind and the match is widened in Python.
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_NOT_TOKEN = r"(?<![A-Za-z0-9_\-])"  # noqa: S105 (a regex, not a password)
SECRET = re.compile(
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
IPV6 = re.compile(
    r":(?<![0-9A-Fa-f]{5}:)(?<!::)"
    r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*"  # a second colon within one group: "Note: " never enters
    rf"(?:(?<=:){_OCTET}(?:\.{_OCTET}){{3}})?"
    r"(?![0-9A-Za-z_:]|\.\d)",
    re.ASCII,
)
HEX = frozenset("0123456789abcdefABCDEF")
V6 = ("v6", "V6")
IPV6_BEFORE = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:.")


# An IBAN of each registered length, anchored at its country code.
IBAN_BODY = {
    n: re.compile(rf"[A-Z]{{2}}\d{{2}}(?:[ ]?[A-Z0-9]){{{n - 4}}}", re.ASCII)
    for n in set(IBAN_LENGTHS.values())
}
