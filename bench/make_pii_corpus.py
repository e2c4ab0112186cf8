"""Generate bench/pii_corpus.jsonl: a labelled PII corpus in English and Chinese.

Each line is ``{"text", "lang": "en"|"zh", "spans": [{"start", "end", "type"}]}``
with offsets in Python characters (code points) into ``text``. Lines are built
from sentence templates; a slot is filled with a positive (its span recorded)
or a decoy (no span). Values come from Faker (en_US, zh_CN, IBANs of 20
countries, phone formats of 15 locales) and from small generators for what
Faker lacks (UnionPay, Mastercard 2-series, secrets, compressed IPv6, valid
NANP numbers, CN IDs ending in X). Some values are rewritten with full-width
characters, spaces or dashes. Decoys: order/invoice/tracking numbers (some
chosen to pass Luhn or to look like a CN mobile), dates and timestamps,
version strings, money amounts, ISBNs, UUIDs and hashes, numbers that fail a
checksum, and phone-like numbers that are not phones.

Fixed seed: running it again writes the same file.

    .venv/bin/python -m bench.make_pii_corpus [--lines 1800] [--out bench/pii_corpus.jsonl]
"""

# ruff: noqa: RUF001  (Chinese templates use full-width punctuation, and values are
# rewritten into full-width forms, on purpose)

from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
import json
import random
import string
from collections.abc import Callable
from pathlib import Path

from faker import Faker
from faker.providers.ssn.zh_CN import Provider as ZhSsnProvider

SEED = 20240515

rng = random.Random(SEED)
Faker.seed(SEED)
fake_en = Faker("en_US")
fake_zh = Faker("zh_CN")
IBAN_LOCALES = [
    "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_PT", "de_AT", "de_CH",
    "fi_FI", "no_NO", "da_DK", "cs_CZ", "el_GR", "ro_RO", "tr_TR", "en_IE", "nl_BE", "sk_SK",
    "az_AZ", "uk_UA", "pt_BR",
]  # fmt: skip
PHONE_LOCALES = [
    "en_GB", "de_DE", "fr_FR", "pt_BR", "ru_RU", "pl_PL", "de_CH", "en_NZ", "en_AU", "es_ES",
    "it_IT", "nl_NL", "th_TH", "en_IN", "tr_TR", "en_CA",
]  # fmt: skip
fakers = {loc: Faker(loc) for loc in {*IBAN_LOCALES, *PHONE_LOCALES}}

FULLWIDTH = str.maketrans(
    {c: chr(ord(c) + 0xFEE0) for c in string.digits + string.ascii_letters + "+-.@()"}
)


def maybe_fullwidth(v: str, p: float) -> str:
    return v.translate(FULLWIDTH) if rng.random() < p else v


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + digits(length - len(prefix) - 1)
    for check in string.digits:
        cand = body + check
        total = 0
        for i, ch in enumerate(reversed(cand)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return cand
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- positives


def nanp() -> tuple[str, str, str]:
    return (
        str(rng.randint(2, 9)) + digits(2),
        str(rng.randint(2, 9)) + digits(2),
        digits(4),
    )


def us_phone(bare: bool = False) -> str:
    a, b, c = nanp()
    if bare:
        return a + b + c
    fmt = rng.choice(
        [
            "{a}-{b}-{c}", "({a}){b}-{c}", "({a}) {b}-{c}", "{a}.{b}.{c}", "{a} {b} {c}",
            "+1-{a}-{b}-{c}", "+1 ({a}) {b}-{c}", "001-{a}-{b}-{c}", "1-{a}-{b}-{c}",
            "+1 {a} {b} {c}",
        ]
    )  # fmt: skip
    v = fmt.format(a=a, b=b, c=c)
    if rng.random() < 0.15:
        v += rng.choice(["x", " x", " ext. ", "x"]) + digits(rng.randint(2, 5))
    return v


def intl_phone() -> str:
    loc = rng.choice(PHONE_LOCALES)
    for _ in range(200):
        v = fakers[loc].phone_number()
        if v.startswith("+"):
            return v
    raise AssertionError(loc)


CN_MOBILE_PREFIXES = [
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "147", "150", "151",
    "152", "153", "155", "156", "157", "158", "159", "166", "173", "175", "176", "177", "178",
    "180", "181", "182", "183", "185", "186", "187", "188", "189", "191", "198", "199",
]  # fmt: skip


def cn_mobile() -> str:
    n = rng.choice(CN_MOBILE_PREFIXES) + digits(8)
    shape = rng.random()
    if shape < 0.45:
        v = n
    elif shape < 0.6:
        v = f"{n[:3]} {n[3:7]} {n[7:]}"
    elif shape < 0.7:
        v = f"{n[:3]}-{n[3:7]}-{n[7:]}"
    else:
        prefix = rng.choice(["+86 ", "+86", "+86-", "0086 ", "0086-", "(+86)", "+86 "])
        body = n if rng.random() < 0.6 else f"{n[:3]} {n[3:7]} {n[7:]}"
        v = prefix + body
    return maybe_fullwidth(v, 0.15)


def cn_landline() -> str:
    area = rng.choice(["010", "021", "020", "022", "023", "024", "025", "027", "028", "029",
                       "0755", "0571", "0512", "0531", "0871", "0898"])  # fmt: skip
    sub = str(rng.randint(2, 8)) + digits(7 if len(area) == 3 else rng.choice([6, 7]))
    v = rng.choice([f"{area}-{sub}", f"({area}){sub}", f"({area}) {sub}",
                    f"{area}-{sub[:-4]} {sub[-4:]}", f"+86 {area[1:]} {sub}"])  # fmt: skip
    return maybe_fullwidth(v, 0.1)


def phone_en() -> str:
    r = rng.random()
    if r < 0.3:
        return fake_en.phone_number()  # Faker's own US formats, bare ten digits included
    if r < 0.5:
        return us_phone()
    if r < 0.85:
        return intl_phone()
    return cn_mobile() if r < 0.95 else cn_landline()


def phone_zh() -> str:
    r = rng.random()
    if r < 0.7:
        return cn_mobile()
    if r < 0.85:
        return cn_landline()
    return intl_phone() if r < 0.93 else us_phone()


def card() -> str:
    kind = rng.choice(
        ["visa", "visa", "visa13", "visa19", "mastercard", "mc2", "amex", "discover", "jcb",
         "diners", "unionpay", "unionpay", "unionpay19"]
    )  # fmt: skip
    if kind == "mc2":
        n = luhn_complete(str(rng.randint(2221, 2720)), 16)
    elif kind == "unionpay":
        n = luhn_complete("62" + digits(4), 16)
    elif kind == "unionpay19":
        n = luhn_complete("62" + digits(4), 19)
    elif kind == "jcb":
        n = luhn_complete(str(rng.randint(3528, 3589)), 16)
    else:
        n = fake_en.credit_card_number(card_type=kind)
    shape = rng.random()
    if shape < 0.4:
        return n
    sep = " " if shape < 0.75 else "-"
    if len(n) == 15:
        return sep.join([n[:4], n[4:10], n[10:]])
    if len(n) == 14:
        return sep.join([n[:4], n[4:10], n[10:]])
    return sep.join(n[i : i + 4] for i in range(0, len(n), 4))


def iban() -> str:
    v = fakers[rng.choice(IBAN_LOCALES)].iban()
    if rng.random() < 0.5:
        v = " ".join(v[i : i + 4] for i in range(0, len(v), 4))
    return v


def ssn() -> str:
    v = fake_en.ssn()
    return v.replace("-", " ") if rng.random() < 0.15 else v


CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def when() -> dt.datetime:
    """A moment between 2000 and 2025 (fixed range: the corpus must not depend on today)."""
    return dt.datetime(2000, 1, 1) + dt.timedelta(seconds=rng.randrange(25 * 365 * 86400))


def cn_id_raw() -> str:
    """A valid CN resident ID: a real region code (Faker's list), a birth date, the check."""
    birth = dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(70 * 365))
    body = rng.choice(ZhSsnProvider.area_codes) + f"{birth:%Y%m%d}" + digits(3)
    return body + cn_id_check(body)


def cn_id_check(body: str) -> str:
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, CN_ID_WEIGHTS, strict=True)) % 11]


def cn_id() -> str:
    v = cn_id_raw()
    if rng.random() < 0.25:  # make sure the X check character is well represented
        while not v.endswith("X"):
            v = cn_id_raw()
    if v.endswith("X") and rng.random() < 0.1:
        v = v[:-1] + "x"
    if rng.random() < 0.08:
        v = f"{v[:6]} {v[6:14]} {v[14:]}"
    return maybe_fullwidth(v, 0.12)


def ipv4() -> str:
    v = rng.choice([fake_en.ipv4_public, fake_en.ipv4_private, fake_en.ipv4])()
    return maybe_fullwidth(v, 0.05)


def ipv6() -> str:
    r = rng.random()
    if r < 0.4:
        return fake_en.ipv6()
    if r < 0.8:
        groups = [rng.randint(0, 0xFFFF) for _ in range(8)]
        start = rng.randint(1, 5)
        for i in range(start, start + rng.randint(2, 3)):
            groups[i] = 0
        return ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups)).compressed
    return rng.choice(
        [
            f"fe80::{rng.randint(1, 0xFFFF):x}",
            f"2001:db8::{rng.randint(1, 0xFFFF):x}",
            "::1",
            f"::ffff:{fake_en.ipv4_public()}",
            f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}",
            f"2408:8000:{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 9)}",
        ]
    )


ALNUM = string.ascii_letters + string.digits


def rand(chars: str, n: int) -> str:
    return "".join(rng.choice(chars) for _ in range(n))


def b64url(obj: dict[str, object]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def secret() -> str:
    kind = rng.choice(["openai", "openai_proj", "anthropic", "aws", "github", "slack", "jwt"])
    if kind == "openai":
        return "sk-" + rand(ALNUM, 48)
    if kind == "openai_proj":
        return "sk-proj-" + rand(ALNUM + "_-", 64)
    if kind == "anthropic":
        return "sk-ant-api03-" + rand(ALNUM + "_-", 80)
    if kind == "aws":
        return "AKIA" + rand(string.ascii_uppercase + string.digits, 16)
    if kind == "github":
        return "ghp_" + rand(ALNUM, 36)
    if kind == "slack":
        return f"xox{rng.choice('abpr')}-{digits(11)}-{digits(12)}-{rand(ALNUM, 24)}"
    header = b64url({"alg": "HS256", "typ": "JWT"})
    payload = b64url({"sub": str(rng.randint(1, 10**6)), "name": fake_en.name(),
                      "iat": rng.randint(1_600_000_000, 1_800_000_000)})  # fmt: skip
    return f"{header}.{payload}.{rand(ALNUM + '_-', 43)}"


def email_en() -> str:
    r = rng.random()
    if r < 0.6:
        v = rng.choice([fake_en.email, fake_en.free_email, fake_en.company_email])()
    elif r < 0.8:
        user, dom = fake_en.email().split("@")
        v = f"{user}+{rng.choice(['news', 'work', 'x1'])}@{rng.choice(['mail.', 'eu.', ''])}{dom}"
    else:
        v = f"{fake_en.first_name()}.{fake_en.last_name()}@{fake_en.domain_name()}"
    return v


def email_zh() -> str:
    r = rng.random()
    if r < 0.5:
        v = fake_zh.email()
    elif r < 0.8:
        domain = rng.choice(["163.com", "126.com", "qq.com", "139.com"])
        v = f"{rng.choice(CN_MOBILE_PREFIXES)}{digits(8)}@{domain}"
    else:
        v = f"{digits(rng.randint(6, 10))}@qq.com"
    return maybe_fullwidth(v, 0.08)


# ---------------------------------------------------------------- decoys


def bad_luhn_card() -> str:
    n = card().replace(" ", "").replace("-", "")
    last = str((int(n[-1]) + rng.randint(1, 9)) % 10)
    n = n[:-1] + last
    return n if rng.random() < 0.5 else " ".join(n[i : i + 4] for i in range(0, len(n), 4))


def bad_cn_id() -> str:
    v = cn_id_raw()
    kind = rng.random()
    if kind < 0.6:  # wrong check character
        wrong = rng.choice([c for c in "0123456789X" if c != v[-1]])
        return v[:-1] + wrong
    if kind < 0.8:  # impossible birth date, check char recomputed
        body = v[:10] + rng.choice(["13", "00", "02"]) + rng.choice(["30", "31", "32"]) + v[14:17]
        return body + cn_id_check(body)
    body = "99" + v[2:17]  # no such province
    return body + cn_id_check(body)


def bad_iban() -> str:
    v = fakers[rng.choice(IBAN_LOCALES)].iban()
    check = int(v[2:4])
    v = v[:2] + f"{(check + rng.randint(1, 96)) % 97:02d}" + v[4:]
    return v if rng.random() < 0.5 else " ".join(v[i : i + 4] for i in range(0, len(v), 4))


def bad_ssn() -> str:
    area = rng.choice(["000", "666", str(rng.randint(900, 999))])
    r = rng.random()
    if r < 0.6:
        return f"{area}-{digits(2)}-{digits(4)}"
    if r < 0.8:
        return f"{rng.randint(100, 665)}-00-{digits(4)}"
    return f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-0000"


def bad_ip() -> str:
    parts = [str(rng.randint(0, 255)) for _ in range(4)]
    parts[rng.randrange(4)] = str(rng.randint(256, 999))
    return ".".join(parts)


def order_number() -> str:
    r = rng.random()
    if r < 0.3:
        return luhn_complete(rng.choice(["4", "51", "62", "37"]), rng.choice([13, 15, 16]))
    if r < 0.55:
        return rng.choice(CN_MOBILE_PREFIXES) + digits(8)
    return str(rng.randint(1, 9)) + digits(rng.randint(9, 17))


def ri(lo: int, hi: int) -> int:
    return rng.randint(lo, hi)


def dotted(*ranges: tuple[int, int]) -> str:
    """A version-like dotted number, one part per (lo, hi) range."""
    return ".".join(str(ri(lo, hi)) for lo, hi in ranges)


def clock() -> str:
    return f"{ri(0, 23):02d}:{ri(0, 59):02d}:{ri(0, 59):02d}"


def money(lo: int, hi: int) -> str:
    return f"{ri(lo, hi):,}.{digits(2)}"


def mac(hexdigits: str) -> str:
    return ":".join(rand(hexdigits, 2) for _ in range(6))


def unix_s() -> int:
    return ri(1_500_000_000, 1_800_000_000)


def unix_ms() -> int:
    return ri(1_500_000_000_000, 1_800_000_000_000)


def ten_digits() -> str:
    return str(ri(2, 9)) + digits(9)


DECOYS_EN: list[Callable[[], str]] = [
    lambda: f"Order #{order_number()} has shipped.",
    lambda: f"Your order no. {order_number()} is confirmed.",
    lambda: f"Invoice number {order_number()} is due on {when():%Y-%m-%d}.",
    lambda: f"Tracking number: {order_number()}.",
    lambda: f"Reference {ten_digits()} was closed.",
    lambda: f"Account {ten_digits()} has a balance of ${money(1, 99999)}.",
    lambda: f"The meeting is at {when().isoformat()}Z.",
    lambda: f"Logged at {when():%Y-%m-%d %H:%M:%S}, duration {clock()}.",
    lambda: f"Due {when():%m/%d/%Y %I:%M %p}.",
    lambda: f"Unix time {unix_s()} or {unix_ms()} ms.",
    lambda: f"Upgrade to v{dotted((0, 20), (0, 30), (0, 99))} today.",
    lambda: f"We run version {dotted((1, 20), (0, 9), (0, 9), (0, 99))} in production.",
    lambda: f"User agent Chrome/{dotted((90, 130), (0, 0), (1000, 6999), (10, 200))} Safari.",
    lambda: f"Firmware build {dotted((1, 12), (0, 9), (0, 99), (0, 255))} is signed.",
    lambda: f"The OID is 1.3.6.1.4.1.{ri(100, 99999)}.",
    lambda: f"Invoice total: ${money(1000, 9_999_999)}.",
    lambda: f"Total due USD {money(10_000, 99_999_999)}, tax {money(1, 999)}.",
    lambda: f"ISBN {fake_en.isbn13()} is out of print.",
    lambda: f"See ISBN-10 {fake_en.isbn10()} and {fake_en.isbn13().replace('-', '')}.",
    lambda: f"Request id {fake_en.uuid4()} failed.",
    lambda: f"Commit {fake_en.sha1()} fixed it.",
    lambda: f"The card {bad_luhn_card()} was declined as invalid.",
    lambda: f"ID {bad_cn_id()} failed validation.",
    lambda: f"IBAN {bad_iban()} has a bad check digit.",
    lambda: f"The number {bad_ssn()} is not a valid SSN.",
    lambda: f"Host {bad_ip()} is not an address.",
    lambda: "Dial 123-456-7890 in the demo (fake).",
    lambda: f"Code {ri(0, 1)}{digits(2)}-{ri(2, 9)}{digits(2)}-{digits(4)} is a part number.",
    lambda: f"ZIP {digits(5)}-{digits(4)}.",
    lambda: f"MAC {mac('0123456789ABCDEF')} is blocked.",
    lambda: f"Coordinates {rng.uniform(-90, 90):.6f}, {rng.uniform(-180, 180):.6f}.",
    lambda: f"Population grew to {ri(1_000_000_000, 1_999_999_999)} in {ri(1990, 2024)}.",
    lambda: f"Pages {ri(100, 499)}-{ri(500, 999)} cover {ri(2001, 2015)}-{ri(2016, 2024)}.",
    lambda: f"Score +{ri(1, 99)} points, {ri(10, 99)}% up.",
    lambda: f"Shipment {ri(10, 12)}{digits(9)} left the depot.",
]

DECOYS_ZH: list[Callable[[], str]] = [
    lambda: f"订单号：{order_number()}，请注意查收。",
    lambda: f"您的订单{order_number()}已发货",
    lambda: f"快递单号{order_number()}正在派送。",
    lambda: f"发票号码：{order_number()}，金额¥{money(100, 999_999)}元。",
    lambda: f"运单编号{order_number()}已签收",
    lambda: f"工单编号：{order_number()}。",
    lambda: f"会议时间：{when():%Y年%m月%d日 %H:%M}。",
    lambda: f"日志时间{when():%Y-%m-%d %H:%M:%S}记录了错误",
    lambda: f"时间戳{unix_ms()}对应的日期是{when():%Y-%m-%d}。",
    lambda: f"请升级到版本{dotted((1, 20), (0, 9), (0, 9), (0, 99))}。",
    lambda: f"当前版本号：{dotted((0, 9), (0, 30), (0, 99))}，",
    lambda: f"合计：¥{money(1000, 9_999_999)}元",
    lambda: f"应付金额{ri(1000, 99_999)}.{digits(2)}元，已付{ri(10, 999)}元。",
    lambda: f"书号ISBN {fake_zh.isbn13()}已售罄。",
    lambda: f"请求ID：{fake_zh.uuid4()}处理失败。",
    lambda: f"卡号{bad_luhn_card()}校验失败。",
    lambda: f"身份证号{bad_cn_id()}无效。",
    lambda: f"账户IBAN{bad_iban()}校验位错误",
    lambda: f"地址{bad_ip()}不是合法IP。",
    lambda: f"编号{bad_ssn()}不是有效的社会安全号。",
    lambda: f"号码12{digits(9)}不是手机号。",
    lambda: f"流水号{order_number()}已入账",
    lambda: f"设备MAC地址{mac('0123456789abcdef')}已绑定",
    lambda: f"坐标{rng.uniform(20, 50):.6f},{rng.uniform(80, 130):.6f}附近",
    lambda: f"全国人口{ri(1_300_000_000, 1_499_999_999)}人",
    lambda: f"{ri(2001, 2015)}-{ri(2016, 2024)}年间增长了{ri(1, 99)}%",
    lambda: f"时长{clock()}",
    lambda: f"批次{order_number()}已出库。",
]

# ---------------------------------------------------------------- templates

EN: dict[str, list[str]] = {
    "EMAIL": [
        "Please email {} with the details.", "My address is {}.", "Contact: {}",
        "Forward the report to {} and cc the team.", "{} asked about the refund.",
        "Send it to <{}> by Friday.", "Reply-To: {}",
    ],
    "PHONE": [
        "Call me at {} after 5pm.", "My cell is {}.", "Phone: {}",
        "You can reach our office on {}.", "The hotline {} is open around the clock.",
        "Ask for Jane at {} tomorrow.",
        "Fax the form to {}.", "{} is the number on file.", "Text {} when you arrive.",
    ],
    "CREDIT_CARD": [
        "Charge my card {} please.", "Card number: {}", "I paid with {} yesterday.",
        "The Visa ending ... wait, full number {} was used.", "Use {} for the deposit.",
        "{} was charged twice.",
    ],
    "IBAN": [
        "Wire the money to IBAN {}.", "Our bank account is {}.", "IBAN: {}",
        "Please refund to {} instead.", "{} belongs to the supplier.",
    ],
    "US_SSN": [
        "My SSN is {}.", "Social security number {} on the W-2.", "SSN: {}",
        "The applicant ({}) was approved.", "Verify {} against the form.",
    ],
    "CN_ID": [
        "Chinese resident ID {} was submitted.", "ID card number: {}",
        "The passenger's ID {} did not match.", "{} is the citizen ID on the ticket.",
    ],
    "IPV4": [
        "Requests from {} were blocked.", "The server at {} is down.", "Client IP: {}",
        "ssh admin@{} -p 22", "Whitelist {} in the firewall.", "{} sent 500 requests.",
    ],
    "IPV6": [
        "Requests from {} were blocked.", "The host resolves to {}.", "Client IP: {}",
        "Ping {} to check.", "Add [{}]:443 to the allow list.", "{} is the gateway.",
    ],
    "SECRET": [
        "Here is my key {}, keep it safe.", "export OPENAI_API_KEY={}", "token: {}",
        "Authorization: Bearer {}", "I accidentally committed {} to git.",
        "Use {} for the webhook.",
    ],
}  # fmt: skip
EN_BARE_US = [
    "Call me at {} after 5pm.", "My phone number is {}.", "Tel: {}", "Please text me at {}.",
    "Mobile {}", "Reach me at {} any time.",
]  # fmt: skip

ZH: dict[str, list[str]] = {
    "EMAIL": [
        "请把资料发到{}，谢谢。", "我的邮箱是{}", "联系邮箱：{}。", "{}是客服邮箱",
        "如有问题请发邮件至{}咨询", "抄送给{}和王经理。",
    ],
    "PHONE": [
        "我的手机号是{}，有事随时联系。", "请拨打{}咨询。", "联系电话：{}",
        "{}是我的新号码", "客服热线{}全天开放。", "张先生的电话{}已停机。", "收件人：李伟，{}，北京市朝阳区。",
        "如需帮助请致电{}。",
    ],
    "CREDIT_CARD": [
        "我的银行卡号是{}。", "请用卡号{}付款", "信用卡{}被盗刷了", "{}这张卡已经挂失。",
        "退款已退回尾号为……的卡，完整卡号{}。",
    ],
    "IBAN": [
        "请汇款至IBAN：{}。", "对方账户{}，请核对。", "收款IBAN{}", "供应商的IBAN是{}。",
    ],
    "US_SSN": [
        "他的美国社会安全号码是{}。", "SSN：{}", "申请人社保号{}已核实",
    ],
    "CN_ID": [
        "身份证号码：{}", "我的身份证是{}，请核对。", "乘客证件号{}与订单不符",
        "{}是他的身份证号。", "请输入身份证号{}完成实名认证",
    ],
    "IPV4": [
        "服务器地址{}已经下线", "来自{}的请求被拦截了。", "客户端IP：{}",
        "请把{}加入白名单", "登录IP为{}，位置异常。",
    ],
    "IPV6": [
        "服务器地址{}已经下线", "来自{}的请求被拦截了。", "IPv6地址：{}",
        "请把{}加入白名单", "网关是{}吗？",
    ],
    "SECRET": [
        "我的API密钥是{}，别外传。", "令牌：{}", "请在请求头里带上Bearer {}",
        "不小心把{}提交到了仓库", "环境变量OPENAI_API_KEY={}",
    ],
}  # fmt: skip

GEN_EN: dict[str, Callable[[], str]] = {
    "EMAIL": email_en, "PHONE": phone_en, "CREDIT_CARD": card, "IBAN": iban, "US_SSN": ssn,
    "CN_ID": cn_id, "IPV4": ipv4, "IPV6": ipv6, "SECRET": secret,
}  # fmt: skip
GEN_ZH: dict[str, Callable[[], str]] = {
    "EMAIL": email_zh, "PHONE": phone_zh,
    "CREDIT_CARD": lambda: maybe_fullwidth(card(), 0.1), "IBAN": iban, "US_SSN": ssn,
    "CN_ID": cn_id, "IPV4": ipv4, "IPV6": ipv6, "SECRET": secret,
}  # fmt: skip
TYPES = list(GEN_EN)


Spans = list[tuple[int, int, str]]
ZH_STOPS = "。，！？；：、）"


def joiner(lang: str, before: str) -> str:
    """What goes between two clauses: a full stop unless the clause already ends with
    punctuation (in Chinese a comma, and entities stay glued to Chinese words)."""
    if lang == "en":
        return " " if before.endswith((".", "!", "?", ")", ":")) else ". "
    return "" if before.endswith(tuple(ZH_STOPS)) else "，"


def sentence(lang: str, typ: str) -> tuple[str, Spans]:
    """A sentence with one entity of ``typ``; spans relative to the sentence."""
    if lang == "en" and typ == "PHONE" and rng.random() < 0.12:
        template, value = rng.choice(EN_BARE_US), us_phone(bare=True)
    else:
        templates = (EN if lang == "en" else ZH)[typ]
        template = rng.choice(templates)
        value = (GEN_EN if lang == "en" else GEN_ZH)[typ]()
    before, after = template.split("{}")
    start = len(before)
    return before + value + after, [(start, start + len(value), typ)]


def line(lang: str, first_type: str) -> dict[str, object]:
    parts: list[tuple[str, Spans]] = [sentence(lang, first_type)]
    if rng.random() < 0.35:
        parts.append(sentence(lang, rng.choice(TYPES)))
    decoys = DECOYS_EN if lang == "en" else DECOYS_ZH
    for _ in range(rng.choice([0, 1, 1, 2])):
        parts.append((rng.choice(decoys)(), []))
    rng.shuffle(parts)
    if lang == "zh" and rng.random() < 0.3:
        parts.append(("请" + fake_zh.sentence(), []))
    elif lang == "en" and rng.random() < 0.3:
        parts.append((fake_en.sentence(), []))
    return assemble(parts, lang)


def assemble(parts: list[tuple[str, Spans]], lang: str) -> dict[str, object]:
    """One labelled line: the parts joined, each part's spans moved to its offset."""
    text = ""
    spans: Spans = []
    for i, (s, sp) in enumerate(parts):
        if i:
            text += joiner(lang, text)
        offset = len(text)
        text += s
        spans += [(a + offset, b + offset, t) for a, b, t in sp]
    return {
        "text": text,
        "lang": lang,
        "spans": [{"start": a, "end": b, "type": t} for a, b, t in spans],
    }


def decoy_line(lang: str) -> dict[str, object]:
    decoys = DECOYS_EN if lang == "en" else DECOYS_ZH
    text = ""
    for i in range(rng.randint(1, 3)):
        text += (joiner(lang, text) if i else "") + rng.choice(decoys)()
    return {
        "text": text,
        "lang": lang,
        "spans": [],
    }


# ------------------------------------------- cue-driven classes (issue 15)
#
# Numbers that only a cue before them makes PII: nine-digit SSNs without separators
# after an SSN cue, and Luhn-valid 13-19 digit numbers whose issuer prefix is in no
# brand table after a card cue. Each cue spelled several ways, in both languages,
# beside decoys: the same digits with no cue, far from it, on the next line, failing
# their check, after an order label, and phones after a card cue (which stay phones).


def ssn_bare() -> str:
    area = rng.choice([f"{rng.randint(1, 665):03d}", f"{rng.randint(667, 899):03d}"])
    v = f"{area}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
    return maybe_fullwidth(v, 0.05)


def bad_ssn_bare() -> str:
    r = rng.random()
    if r < 0.5:
        return rng.choice(["000", "666", str(rng.randint(900, 999))]) + digits(6)
    if r < 0.75:
        return f"{rng.randint(100, 665)}00{rng.randint(1, 9999):04d}"
    return f"{rng.randint(100, 665)}{rng.randint(10, 99)}0000"


# Issuer prefixes no brand table knows (no card network starts with 0, 1, 7 or 9, nor
# with 31-33 or 83-89).
UNKNOWN_IIN = ["0", "1", "7", "9", "31", "32", "33", "83", "85", "88", "89"]


def grouped(n: str, sep: str) -> str:
    if len(n) in (14, 15):
        return sep.join([n[:4], n[4:10], n[10:]])
    return sep.join(n[i : i + 4] for i in range(0, len(n), 4))


def unknown_card(luhn: bool = True) -> str:
    n = luhn_complete(rng.choice(UNKNOWN_IIN), rng.randint(13, 19))
    if not luhn:
        n = n[:-1] + str((int(n[-1]) + rng.randint(1, 9)) % 10)
    shape = rng.random()
    v = n if shape < 0.5 else grouped(n, " " if shape < 0.8 else "-")
    return maybe_fullwidth(v, 0.05)


CUE_EN: dict[str, list[str]] = {
    "US_SSN": [
        "SSN {}", "SSN: {}", "SSN #{}", "SSN# {}", "ssn {} on file.", "My SSN is {}.",
        "Social Security Number: {}", "social security no. {}", "Social Security #{}",
        "Soc. Sec. No. {}", "S.S.N. {}", "Her social security number is {}.",
        "Social-Security number {} was verified.", "SSN (no dashes): {}", "SSN={}",
        "Applicant SSN - {}", "SOCIAL SECURITY NUMBER {}", "SS# {}", "SS No. {}",
        "SSN/TIN: {}", "Social Sec. No. {}",
    ],
    "CREDIT_CARD": [
        "card {}", "Card number: {}", "Charge my card {} please.", "credit card {} was used.",
        "Please refund to {}.", "Refund it to {} instead.", "I paid with {} yesterday.",
        "debit card no. {}", "Charge card #{} please.", "My card is {}.", "CC: {}",
        "Refunded to {} on Monday.", "Gift card {} has a balance.", "Card ending... full PAN {}",
        "Refunds go back to {}.", "billed to {} monthly", "payment card: {}", "CC# {}",
    ],
}  # fmt: skip
CUE_ZH: dict[str, list[str]] = {
    "US_SSN": [
        "社会安全号{}", "社会安全号码：{}", "美国社会安全号码是{}。", "SSN：{}",
        "社保号{}已核实", "他的社会保障号为{}", "SSN号码{}", "申请人的社会安全码{}无误。",
        "社会保险号：{}", "社安号{}",
    ],
    "CREDIT_CARD": [
        "卡号{}", "银行卡号：{}", "信用卡{}被盗刷了", "退款至{}", "请退款到卡{}",
        "借记卡号{}", "储蓄卡{}已挂失", "我的银行卡是{}。", "卡号为：{}，请核对",
        "退回到{}的款项已到账", "付款卡号{}", "银联卡{}", "借记卡号码：{}",
    ],
}  # fmt: skip
CUE_DECOYS_EN: list[Callable[[], str]] = [
    lambda: f"SSN {bad_ssn_bare()} is not a valid number.",
    lambda: f"The SSN field was left blank, and the batch held {ssn_bare()} records.",
    lambda: f"Enter your SSN below.\n{ssn_bare()} forms were filed.",
    lambda: f"SSN for order #{ssn_bare()} is pending.",
    lambda: f"Order #{ssn_bare()} has shipped.",
    lambda: f"Population {ssn_bare()} in the census.",
    lambda: f"Ticket {ssn_bare()} was closed.",
    lambda: f"card {unknown_card(luhn=False)} was rejected.",
    lambda: f"Refund to order no. {unknown_card()} is queued.",
    lambda: f"Your card arrived last week; please quote {unknown_card()} when you call.",
    lambda: f"The value {unknown_card()} overflowed the counter.",
    lambda: f"Card services:\n{unknown_card()} was logged.",
    lambda: f"Card invoice number {unknown_card()} is due.",
]
CUE_DECOYS_ZH: list[Callable[[], str]] = [
    lambda: f"社会安全号{bad_ssn_bare()}不是有效号码。",
    lambda: f"编号{ssn_bare()}不是社会安全号。",
    lambda: f"订单号{ssn_bare()}已发货",
    lambda: f"社保业务已经办理完毕，本批次共计{ssn_bare()}条记录",
    lambda: f"卡号{unknown_card(luhn=False)}校验失败。",
    lambda: f"信用卡订单号{unknown_card()}已提交",
    lambda: f"银行卡已寄出，如有疑问请提供流水号以外的编码{unknown_card()}",
    lambda: f"计数器溢出：{unknown_card()}",
    lambda: f"退款单号{unknown_card()}处理中",
]
# Phones right after a card cue are still phones, never cards.
CUE_PHONES_EN = ["Card hotline {}", "Call the card center at {}.", "Credit card support: {}"]
CUE_PHONES_ZH = ["信用卡客服电话{}", "银行卡中心热线：{}", "卡号问题请致电{}"]


def cue_line(lang: str, typ: str) -> dict[str, object]:
    """A line with one cue-driven entity, maybe another entity, and cue decoys."""
    templates = (CUE_EN if lang == "en" else CUE_ZH)[typ]
    template = rng.choice(templates)
    value = ssn_bare() if typ == "US_SSN" else unknown_card()
    before, after = template.split("{}")
    parts: list[tuple[str, Spans]] = [
        (before + value + after, [(len(before), len(before) + len(value), typ)])
    ]
    if rng.random() < 0.25:
        phone_template = rng.choice(CUE_PHONES_EN if lang == "en" else CUE_PHONES_ZH)
        phone = us_phone() if lang == "en" else cn_mobile()
        b, a = phone_template.split("{}")
        parts.append((b + phone + a, [(len(b), len(b) + len(phone), "PHONE")]))
    if rng.random() < 0.25:
        parts.append(sentence(lang, rng.choice(TYPES)))
    decoys = CUE_DECOYS_EN if lang == "en" else CUE_DECOYS_ZH
    for _ in range(rng.choice([0, 1, 1, 2])):
        parts.append((rng.choice(decoys)(), []))
    rng.shuffle(parts)
    return assemble(parts, lang)


def cue_decoy_line(lang: str) -> dict[str, object]:
    decoys = CUE_DECOYS_EN if lang == "en" else CUE_DECOYS_ZH
    text = ""
    for i in range(rng.randint(1, 3)):
        text += (joiner(lang, text) if i else "") + rng.choice(decoys)()
    return {"text": text, "lang": lang, "spans": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1800)
    ap.add_argument(
        "--cue-lines", type=int, default=800,
        help="lines of the cue-driven classes (SSN without separators, cards of unknown issuers)",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("pii_corpus.jsonl"))
    args = ap.parse_args()
    rows = []
    for i in range(args.lines):
        lang = "en" if i % 2 == 0 else "zh"
        if i % 5 == 4:
            rows.append(decoy_line(lang))
        else:
            rows.append(line(lang, TYPES[(i // 2) % len(TYPES)]))
    # After the lines above, so that those stay as they were (the same seed, in order).
    for i in range(args.cue_lines):
        lang = "en" if i % 2 == 0 else "zh"
        if i % 5 == 4:
            rows.append(cue_decoy_line(lang))
        else:
            rows.append(cue_line(lang, ["US_SSN", "CREDIT_CARD"][(i // 2) % 2]))
    with args.out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} lines to {args.out}")


if __name__ == "__main__":
    main()
