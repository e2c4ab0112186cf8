"""Unit tests for gateway.pii: detection, validation, decoys, placeholders, policy.

Every test runs twice: on the native scanner and on the Python reference, each handed
to the Redactor (the ``pii_scanner`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import hashlib

import pytest

from gateway.pii import (
    Action,
    EntityType,
    PiiBlocked,
    RedactionResult,
    Redactor,
    Scanner,
    Span,
    sha256_hex,
)
from ragward.errors import RagwardError


@pytest.fixture
def redactor(pii_scanner: Scanner) -> Redactor:
    return Redactor(scanner=pii_scanner)


def found(redactor: Redactor, text: str) -> list[tuple[str, str]]:
    """(type, original substring) for every entity found in ``text``."""
    return [(s.type.value, text[s.start : s.end]) for s in redactor.find(text)]


# --------------------------------------------------------------------- positives


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mail John.Doe+tag@example.co.uk.", "John.Doe+tag@example.co.uk"),
        ("请发邮件到zhang.wei@example.com联系", "zhang.wei@example.com"),
        ("Reply-To: <a_b%c@mail.sub.example.org>", "a_b%c@mail.sub.example.org"),
    ],
)
def test_email_is_found(redactor: Redactor, text: str, value: str) -> None:
    """E-mail addresses are found, in English and glued inside Chinese text."""
    assert found(redactor, text) == [("EMAIL", value)]


@pytest.mark.parametrize(
    "value",
    [
        "(415) 555-0132",
        "(415)555-0132",
        "415-555-0132",
        "415.555.0132",
        "415 555 0132",
        "+1-415-555-0132",
        "+1 (415) 555-0132",
        "001-415-555-0132",
        "1-415-555-0132",
        "415-555-0132x1234",
        "+44 20 7946 0958",
        "+44(0)7700 900 123",
        "+33 1 23 45 67 89",
        "+49 (0) 9141 777631",
        "+7 (914) 177-76-31",
        "+8613800138000",
        "+86 138 0013 8000",
        "0086 13800138000",
        "(+86)13800138000",
        "13800138000",
        "138-0013-8000",
        "010-12345678",
        "(0755) 8888 1234",
    ],
)
def test_phone_formats_are_found(redactor: Redactor, value: str) -> None:
    """International (+CC, 00CC), US, CN mobile and CN landline phone formats are found."""
    assert found(redactor, f"contact {value} today") == [("PHONE", value)]


def test_cn_mobile_glued_in_chinese_is_found(redactor: Redactor) -> None:
    """A CN mobile number written without spaces inside Chinese text is found."""
    assert found(redactor, "我的手机号是13912345678，有事联系") == [("PHONE", "13912345678")]


def test_bare_us_number_needs_a_phone_cue(redactor: Redactor) -> None:
    """A bare ten-digit number is a phone after "call me at", not after "account"."""
    assert found(redactor, "call me at 4155550132") == [("PHONE", "4155550132")]
    assert found(redactor, "account 4155550132 is overdrawn") == []


@pytest.mark.parametrize(
    "value",
    [
        "4111111111111111",  # Visa
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",  # Mastercard
        "2223003122003222",  # Mastercard 2-series
        "378282246310005",  # Amex
        "3782 822463 10005",
        "6011111111111117",  # Discover
        "6212345678901232",  # UnionPay 62...
        "3530111333300000",  # JCB
        "4222222222222",  # Visa, 13 digits
    ],
)
def test_credit_cards_are_found(redactor: Redactor, value: str) -> None:
    """Luhn-valid numbers of known issuers are cards, plain or grouped by spaces or dashes."""
    assert found(redactor, f"card {value} please") == [("CREDIT_CARD", value)]


@pytest.mark.parametrize(
    "value",
    [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
    ],
)
def test_ibans_are_found(redactor: Redactor, value: str) -> None:
    """IBANs with the right length for their country and mod-97 check, with or without spaces."""
    assert found(redactor, f"IBAN {value} EUR") == [("IBAN", value)]


def test_iban_glued_to_its_label_is_found(redactor: Redactor) -> None:
    """An IBAN written straight after the label ("收款IBANDE89...") is still found."""
    assert found(redactor, "收款IBANDE89370400440532013000。") == [
        ("IBAN", "DE89370400440532013000")
    ]


def test_entity_right_after_an_iban_is_found(redactor: Redactor) -> None:
    """Scanning resumes where the IBAN ends, not where its greedy candidate ended."""
    text = "IBAN DE89 3704 0044 0532 0130 00 4111 1111 1111 1111 ok"
    assert found(redactor, text) == [
        ("IBAN", "DE89 3704 0044 0532 0130 00"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
    ]


def test_us_ssn_is_found(redactor: Redactor) -> None:
    """SSNs with dashes or spaces and valid area / group / serial are found."""
    assert found(redactor, "SSN 123-45-6789 or 123 45 6789") == [
        ("US_SSN", "123-45-6789"),
        ("US_SSN", "123 45 6789"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "SSN 234567890",
        "SSN: 234567890",
        "SSN #234567890",
        "SSN#234567890",
        "ssn 234567890 on file",
        "My SSN is 234567890.",
        "S.S.N. 234567890",
        "SSN (234567890)",
        "Social Security Number: 234567890",
        "social security no. 234567890",
        "Social-Security # 234567890",
        "Soc. Sec. No. 234567890",
        "SOCIAL SECURITY NUMBER 234567890",
        "the applicant's social security number is 234567890",
        "社会安全号234567890",
        "美国社会安全号码是234567890。",
        "社会保障号为：234567890",
        "社保号234567890已核实",
        "SSN：２３４５６７８９０",
        "SS# 234567890",
        "SS No. 234567890",
        "SSN/TIN: 234567890",
        "ssn=234567890",
        "Social Sec. No. 234567890",
        "social security #: 234567890",
        "社会保险号234567890",
        "社会安全卡号：234567890",
        "SSN号234567890",
        "Social Security Number (SSN): 234567890",
        "社会安全号码（SSN）：234567890",
        "SocialSecurityNumber=234567890",
        "SocSec 234567890",
        "social sec # 234567890",
        "的SSN是234567890",
        "社安码234567890",
    ],
)
def test_nine_digits_after_an_ssn_cue_are_an_ssn(redactor: Redactor, text: str) -> None:
    """A US SSN written without separators is found right after an SSN cue, however the
    cue is spelt (abbreviated, dotted, in words, in Chinese) and in full-width digits."""
    assert [s.type for s in redactor.find(text)] == [EntityType.US_SSN]
    (span,) = redactor.find(text)
    assert text[span.start : span.end] in ("234567890", "２３４５６７８９０")


@pytest.mark.parametrize(
    "text",
    [
        "Ticket 234567890 was closed.",  # no cue
        "the batch held 234567890 records",
        "SSN 912345678",  # area 9xx
        "SSN 000456789",  # area 000
        "SSN 666456789",  # area 666
        "SSN 123006789",  # group 00
        "SSN 123450000",  # serial 0000
        "SSN 2345678901",  # ten digits
        "SSN 23456789",  # eight digits
        "SSN for order #234567890 is pending.",  # an order label
        "Enter your SSN below.\n234567890 forms were filed.",  # the next line
        "The SSN field was left blank, and the batch held 234567890 records.",  # far
        "社保业务已经办理完毕，本批次共计234567890条记录",  # another clause
        "编号234567890不是社会安全号。",  # the cue after the number
        "lesson 234567890",
        "SSN234567890",  # glued to the cue: one token
        "ss 234567890",
        "boss 234567890",
        "press no. 234567890",
        "class 234567890",
    ],
)
def test_nine_digit_decoys_stay(redactor: Redactor, text: str) -> None:
    """Nine digits are left alone without a cue right before them, far from it, across a
    line or clause, after an order label, or failing the SSN's area/group/serial rules."""
    assert redactor.find(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "card 9999 9999 9999 9995",
        "Card number: 9999-9999-9999-9995",
        "credit card 1234567890123452 was used",
        "Please refund to 1234567890123452.",
        "Refunded it to 1234567890123452 on Monday",
        "I paid with 1234 5678 9012 3452 yesterday",
        "debit card no. 7000000000000000003",  # 19 digits
        "Charge card #7000000000003",  # 13 digits
        "Amex-style grouping on the card: 9234 567890 12349",
        "卡号9123456789012348",
        "银行卡号：9123 4567 8901 2348",
        "信用卡9123456789012348被盗刷了",
        "退款至9123456789012348",
        "请退款到卡9123-4567-8901-2348",
        "银行卡号：0287 0486 6712 2962 13",  # a leading 0 is no landline here
        "refund will go back to 9999999999999995",
        "billed to 9999 9999 9999 9995",
        "payment card: 9999-9999-9999-9995",
        "CC# 9999999999999995",
        "card (9999 9999 9999 9995)",
        "银联卡9999999999999995",
        "借记卡号码：9999999999999995",
        "款项将原路退回9999999999999995",
        "退款到9999 9999 9999 9995",
    ],
)
def test_luhn_numbers_of_unknown_issuers_after_a_card_cue_are_cards(
    redactor: Redactor, text: str
) -> None:
    """A Luhn-valid 13-19 digit number whose issuer prefix no brand table knows is a card
    right after a card cue, bare or grouped, in English and Chinese."""
    assert [s.type for s in redactor.find(text)] == [EntityType.CREDIT_CARD]


@pytest.mark.parametrize(
    "text",
    [
        "card 9999 9999 9999 9996",  # Luhn fails
        "value 9999999999999995 overflowed",  # no cue
        "Your card arrived last week; please quote 9999999999999995 when you call.",
        "card order #9999999999999995 is queued",  # an order label
        "Card invoice number 9999999999999995 is due.",
        "Card services:\n9999999999999995 was logged.",
        "卡号9123456789012349校验失败",
        "信用卡订单号9123456789012348已提交",
        "退款单号9123456789012348处理中",
        "卡业务已经办理完毕本批次9123456789012348",  # far from the cue, in Chinese
        "the refund window closed; 9999999999999995",
        "japan 9999999999999995",  # "pan" only as a word
    ],
)
def test_card_cue_decoys_stay(redactor: Redactor, text: str) -> None:
    """After a card cue, numbers failing Luhn, labelled as orders or invoices, far from
    the cue or on the next line stay; without a cue an unknown issuer is no card."""
    assert redactor.find(text) == []


def test_phones_after_a_card_cue_stay_phones(redactor: Redactor) -> None:
    """A card cue does not turn a phone number into a card."""
    assert found(redactor, "Card hotline 415-555-0132, 信用卡客服电话13812345678") == [
        ("PHONE", "415-555-0132"),
        ("PHONE", "13812345678"),
    ]


@pytest.mark.parametrize(
    "value", ["11010519491231002X", "44052419800101003X", "44052419800101003x"]
)
def test_cn_id_with_x_check_character_is_found(redactor: Redactor, value: str) -> None:
    """A CN resident ID whose ISO 7064 check character is X is found, glued in Chinese text."""
    assert found(redactor, f"身份证{value}号码") == [("CN_ID", value)]


def test_cn_id_with_digit_check_and_spaces_is_found(redactor: Redactor) -> None:
    """CN IDs with a digit check character, and the 6-8-4 spaced form, are found."""
    assert found(redactor, "ID 440524198001010013 and 440524 19800101 0013") == [
        ("CN_ID", "440524198001010013"),
        ("CN_ID", "440524 19800101 0013"),
    ]


def test_ipv4_glued_in_chinese_is_found(redactor: Redactor) -> None:
    """An IPv4 address glued to Chinese characters on both sides is found."""
    assert found(redactor, "服务器地址192.168.1.10已经下线") == [("IPV4", "192.168.1.10")]


@pytest.mark.parametrize(
    "value",
    [
        "2001:db8::8a2e:370:7334",
        "fe80::1",
        "::1",
        "::ffff:192.168.1.1",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    ],
)
def test_ipv6_forms_are_found(redactor: Redactor, value: str) -> None:
    """Full, compressed, loopback and IPv4-mapped IPv6 addresses are found."""
    assert found(redactor, f"来自{value}的请求") == [("IPV6", value)]


@pytest.mark.parametrize("prefix", ["IPv6: ", "地址:", "IPv6:", "[", "服务器"])
def test_ipv6_after_a_label_is_found(redactor: Redactor, prefix: str) -> None:
    """An IPv6 address glued to a label's colon, a bracket or Chinese text is found."""
    assert found(redactor, f"{prefix}fe80::1 ok") == [("IPV6", "fe80::1")]


def test_ipv6_lookalikes_are_not_found(redactor: Redactor) -> None:
    """C++ scopes, hex words and mid-token colons are not IPv6 addresses."""
    assert redactor.find("std::vector and Foo::Bar, note:deadbeef::1x, cafe:babe") == []


@pytest.mark.parametrize(
    "value",
    [
        "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2" * 9,
        "xoxb-12345678901-abcdefGHIJ",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    ],
)
def test_secrets_are_found(redactor: Redactor, value: str) -> None:
    """API keys and tokens with well-known prefixes, and JWTs, are secrets."""
    assert found(redactor, f"key={value} ok") == [("SECRET", value)]


def test_secret_prefixes_inside_longer_tokens_are_not_secrets(redactor: Redactor) -> None:
    """A key id is only a secret as a whole token: not a prefix of a longer one, not in a word."""
    assert redactor.find("id AKIAIOSFODNN7EXAMPLEXYZ here") == []
    assert redactor.find("a risk-assessment-framework-for-everyone today") == []
    assert redactor.find("task_live_abcdefghijklmnopqrstu") == []


# ---------------------------------------------------------- normalisation


def test_full_width_digits_are_found_with_original_offsets(redactor: Redactor) -> None:
    """Full-width digits and signs are caught, and spans index the original text."""
    text = "手机：＋８６ １３８ ００１３ ８０００，邮箱ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ。"
    spans = redactor.find(text)
    assert [(s.type, text[s.start : s.end]) for s in spans] == [
        (EntityType.PHONE, "＋８６ １３８ ００１３ ８０００"),
        (EntityType.EMAIL, "ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
    ]
    assert redactor.redact(text).text == "手机：<PHONE_1>，邮箱<EMAIL_1>。"


def test_expanding_characters_keep_offsets_exact(redactor: Redactor) -> None:
    """Characters whose NFKC form is longer (ligatures, ⑽) do not shift later spans."""
    text = "ﬁle ⑽ ﬂ: call １３８００１３８０００ or mail ａ＠ｂ．ｃｏ"
    assert found(redactor, text) == [("PHONE", "１３８００１３８０００"), ("EMAIL", "ａ＠ｂ．ｃｏ")]


def test_circled_digit_becomes_part_of_a_number(redactor: Redactor) -> None:
    """A circled digit folds to its ASCII digit (NFKC) and its span covers the original char."""
    text = "电话①３８00138000"
    assert found(redactor, text) == [("PHONE", "①３８00138000")]


# ------------------------------------------------------------------ checksums


@pytest.mark.parametrize(
    "text",
    [
        "card 4111111111111112 please",  # Luhn
        "card 4111 1111 1111 1121 please",
        "IBAN DE88370400440532013000 EUR",  # mod 97
        "IBAN GB82WEST12345698765433 EUR",
        "身份证110105194912310021号码",  # ISO 7064 check character (X expected)
        "身份证110105194902300024号码",  # 30 February
        "身份证990105194912310024号码",  # no such province
        "SSN 000-45-6789",  # area 000
        "SSN 666-45-6789",  # area 666
        "SSN 912-45-6789",  # area 9xx
        "SSN 123-00-6789",  # group 00
        "SSN 123-45-0000",  # serial 0000
        "host 256.1.1.1 down",  # octet > 255
        "host 192.168.01.1 down",  # leading zero
        "host 2001:db8::1::2 down",  # two elisions
    ],
)
def test_checksum_and_range_failures_are_not_pii(redactor: Redactor, text: str) -> None:
    """Changing one digit (or an impossible value) makes a validated number stop matching."""
    assert redactor.find(text) == []


# --------------------------------------------------------------------- decoys


@pytest.mark.parametrize(
    "text",
    [
        # order, invoice and tracking numbers, even when they pass Luhn or look like a mobile
        "Order #4111111111111111 has shipped.",
        "Order #4829301928374 has shipped.",
        "Your order no. 13812345678 is confirmed.",
        "Tracking number: 6011111111111117.",
        "订单号：13812345678，请注意查收。",
        "快递单号4111111111111111正在派送",
        # timestamps and dates
        "Logged at 2024-03-15 14:30:00, done 2024-03-15T14:30:00.123456Z.",
        "Due 03/15/2024 02:30 PM; unix 1710513000 or 1710513000123 ms.",
        "会议时间：2024年03月15日 14:30，时长01:02:03",
        # versions
        "Upgrade to v1.2.3.4 or version 10.0.0.1, build 10.0.19041.1.",
        "Chrome/120.0.0.0 Safari, OID 1.3.6.1.4.1.311, 版本2.3.1.0。",
        # invoice totals
        "Invoice total: $4,111,111.11, USD 1,234,567.89, 合计：¥23,456.00元",
        # ISBNs
        "ISBN 978-0-306-40615-7, ISBN-10 0-306-40615-2, 9780306406157.",
        # UUIDs and hashes
        "Request id 550e8400-e29b-41d4-a716-446655440000, commit 3f786850e387550fdab836ed7e6dc881.",
        # phone-like numbers that are not phones
        "Dial 123-456-7890 in the demo, ZIP 94105-1234, part 028-921-0493.",
        "Reference 4155550132 was closed. 号码12345678901不是手机号。",
        "MAC 00:1A:2B:3C:4D:5E, time 12:30:45, pages 123-456, coords 39.904200, 116.407396.",
        "Population 1412000000 in 2023, score +12 points, 35% up.",
    ],
)
def test_decoys_survive(redactor: Redactor, text: str) -> None:
    """Order numbers, dates, versions, totals, ISBNs, UUIDs and phone-like numbers are not PII."""
    result = redactor.redact(text)
    assert result.spans == []
    assert result.text == text


def test_inner_groups_of_a_failed_iban_are_not_phones(redactor: Redactor) -> None:
    """Digit groups inside an IBAN that fails mod-97 do not become phones or cards."""
    assert redactor.find("IBAN SK09 0045 5415 0781 0153 2429 is wrong") == []
    assert redactor.find("The card 2704 0862 0466 9870 was declined") == []


def _cn_id(first17: str) -> str:
    """``first17`` with its ISO 7064 MOD 11-2 check character appended."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    return first17 + "10X98765432"[total % 11]


def test_cn_id_birth_date_follows_leap_years(redactor: Redactor) -> None:
    """29 February is a birth date only in leap years (1996, 2000), not in 1997 or 1900."""
    for first17, ok in [
        ("11010519960229002", True),
        ("11010520000229002", True),
        ("11010519970229002", False),
        ("11010519000229002", False),
        ("11010519970431002", False),  # 31 April
        ("11010519971301002", False),  # month 13
    ]:
        value = _cn_id(first17)
        assert found(redactor, f"身份证{value}号码") == ([("CN_ID", value)] if ok else [])


def test_email_local_part_limits(redactor: Redactor) -> None:
    """A local part is the whole run before "@": 64 characters at most, no dot at either end."""
    local64 = "a" * 63 + "b"
    assert found(redactor, f"to {local64}@example.com") == [("EMAIL", f"{local64}@example.com")]
    assert redactor.find(f"to a{local64}@example.com") == []  # 65 characters
    assert redactor.find("to .bob@example.com") == []
    assert redactor.find("to bob.@example.com") == []
    assert redactor.find("@example.com") == []
    assert found(redactor, "x,bob@example.com") == [("EMAIL", "bob@example.com")]


def test_ipv6_spellings_of_one_address_share_a_placeholder(redactor: Redactor) -> None:
    """Case, leading zeros and "::" do not make a second placeholder for the same address."""
    result = redactor.redact(
        "a 2001:0DB8:0000:0000:0000:0000:0000:0001 b 2001:db8::1 c 2001:db8:0:0:0:0:0:2"
    )
    assert result.text == "a <IPV6_1> b <IPV6_1> c <IPV6_2>"


def test_a_number_followed_by_more_digits_keeps_its_own_placeholder(redactor: Redactor) -> None:
    """An international number ends where its plan is full; the digit group after it is
    neither part of the span nor of the value the placeholder stands for."""
    result = redactor.redact("call +44 20 7946 0958 1234 or +44 20 7946 0958 today")
    assert result.text == "call <PHONE_1> 1234 or <PHONE_1> today"


# --------------------------------------------------------------- placeholders


def test_same_value_gets_the_same_placeholder_across_a_session(redactor: Redactor) -> None:
    """Within one session the same (normalised) value maps to one numbered placeholder."""
    session = redactor.session()
    question = session.redact("Mail bob@example.com or alice@example.com, call +86 138 0013 8000")
    answer = session.redact(
        "Bob (BOB@example.com) answers on 13800138000 and ＋８６１３８００１３８０００"
    )
    assert question.text == "Mail <EMAIL_1> or <EMAIL_2>, call <PHONE_1>"
    assert answer.text == "Bob (<EMAIL_1>) answers on <PHONE_1> and <PHONE_1>"
    assert session.counts == {"EMAIL": 3, "PHONE": 3}
    assert answer.counts == {"EMAIL": 1, "PHONE": 2}


def test_placeholders_are_numbered_per_type_in_order_of_appearance(redactor: Redactor) -> None:
    """Each type has its own counter, starting at 1, in order of first appearance."""
    result = redactor.redact("a@x.io 10.0.0.1 b@x.io 10.0.0.2 a@x.io 123-45-6789")
    assert result.text == "<EMAIL_1> <IPV4_1> <EMAIL_2> <IPV4_2> <EMAIL_1> <US_SSN_1>"


def test_separate_sessions_do_not_share_placeholders(redactor: Redactor) -> None:
    """A new session (request) starts numbering again."""
    assert redactor.redact("a@x.io b@x.io").text == "<EMAIL_1> <EMAIL_2>"
    assert redactor.redact("b@x.io").text == "<EMAIL_1>"


def test_result_spans_refer_to_the_input_text(redactor: Redactor) -> None:
    """RedactionResult.spans are offsets into the input, sorted and non-overlapping."""
    text = "x 13800138000@163.com y 4111 1111 1111 1111"
    result = redactor.redact(text)
    assert isinstance(result, RedactionResult)
    assert result.spans == [
        Span(2, 21, EntityType.EMAIL),
        Span(24, 43, EntityType.CREDIT_CARD),
    ]
    assert result.text == "x <EMAIL_1> y <CREDIT_CARD_1>"


def test_text_without_pii_is_returned_unchanged(redactor: Redactor) -> None:
    """Text with nothing to redact comes back as is, with no spans and no counts."""
    result = redactor.redact("Nothing to see here, 42 times.")
    assert (result.text, result.spans, result.counts) == ("Nothing to see here, 42 times.", [], {})


# --------------------------------------------------------------------- policy


def test_block_raises_pii_blocked_naming_the_type(pii_scanner: Scanner) -> None:
    """A BLOCK type raises PiiBlocked (422, pii_blocked) naming it, before any state change."""
    redactor = Redactor({"credit_card": "block"}, scanner=pii_scanner)
    session = redactor.session()
    with pytest.raises(PiiBlocked) as info:
        session.redact("mail a@x.io, card 4111 1111 1111 1111")
    err = info.value
    assert isinstance(err, RagwardError)
    assert (err.entity_type, err.code, err.status) == ("CREDIT_CARD", "pii_blocked", 422)
    assert "CREDIT_CARD" in str(err)
    assert session.counts == {}
    assert session.redact("mail a@x.io").text == "mail <EMAIL_1>"


def test_keep_leaves_the_value_but_counts_it(pii_scanner: Scanner) -> None:
    """A KEEP type is detected and counted but left in the text."""
    redactor = Redactor({EntityType.IPV4: Action.KEEP}, scanner=pii_scanner)
    result = redactor.redact("from 10.1.2.3 by a@x.io")
    assert result.text == "from 10.1.2.3 by <EMAIL_1>"
    assert result.counts == {"IPV4": 1, "EMAIL": 1}
    assert [s.type for s in result.spans] == [EntityType.IPV4, EntityType.EMAIL]


def test_unknown_type_or_action_is_rejected() -> None:
    """A misspelt entity type or action in the policy fails loudly at construction."""
    with pytest.raises(ValueError, match="CREDITCARD"):
        Redactor({"CREDITCARD": "redact"})
    with pytest.raises(ValueError, match="hide"):
        Redactor({"EMAIL": "hide"})


def test_sha256_hex_hashes_utf8() -> None:
    """sha256_hex is the hex SHA-256 of the UTF-8 bytes."""
    assert sha256_hex("手机13800138000") == hashlib.sha256("手机13800138000".encode()).hexdigest()
