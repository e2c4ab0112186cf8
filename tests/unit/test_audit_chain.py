"""Canonical JSON, the chain hash and the chain checker, as pure functions."""

from __future__ import annotations

import hashlib

from telemetry.audit_chain import (
    GENESIS_HASH,
    Anchor,
    ChainChecker,
    canonical_json,
    chain_hash,
)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    """Keys sorted at every depth, no whitespace, non-ASCII kept as UTF-8 bytes."""
    record = {"b": 1, "a": {"d": [1, 2], "c": "Zoë 北京"}, "e": None, "f": True}
    assert (
        canonical_json(record)
        == '{"a":{"c":"Zoë 北京","d":[1,2]},"b":1,"e":null,"f":true}'.encode()
    )


def test_chain_hash_uses_raw_previous_bytes() -> None:
    """hash = SHA-256(32 raw bytes of prev || canonical), not the hex text of prev."""
    canon = b'{"a":1}'
    assert chain_hash(GENESIS_HASH, canon) == hashlib.sha256(bytes(32) + canon).hexdigest()
    assert (
        chain_hash(GENESIS_HASH, canon) != hashlib.sha256(GENESIS_HASH.encode() + canon).hexdigest()
    )


def _chain(n: int, partition: int = 0) -> list[tuple[int, str, str, str, int]]:
    rows = []
    prev = GENESIS_HASH
    for i in range(n):
        text = canonical_json({"partition": partition, "offset": i, "n": i}).decode()
        digest = chain_hash(prev, text.encode())
        rows.append((i, text, prev, digest, i + 1))
        prev = digest
    return rows


def test_intact_chain_checks_out_against_its_head() -> None:
    """Every row links and the end equals the recorded head."""
    rows = _chain(5)
    checker = ChainChecker(0, Anchor.genesis(), [(1, rows[1][3], 2)])
    assert all(checker.feed(*row) for row in rows)
    assert checker.finish_against_head(4, rows[4][3], 5)
    assert checker.problem is None


def test_first_break_is_kept_and_named() -> None:
    """An altered row is reported at its offset; later rows do not overwrite the report."""
    rows = _chain(5)
    rows[2] = (2, rows[2][1].replace('"n":2', '"n":20'), *rows[2][2:])
    checker = ChainChecker(0, Anchor.genesis())
    for row in rows:
        checker.feed(*row)
    assert checker.problem is not None and checker.problem.offset == 2
    assert str(checker.problem).startswith("partition 0 offset 2:")


def test_missing_checkpoint_record_and_missing_head_are_reported() -> None:
    """A checkpoint or head naming a row that is not there means rows were deleted."""
    rows = _chain(6)
    checker = ChainChecker(0, Anchor.genesis(), [(5, rows[5][3], 6)])
    for row in rows[:4]:
        checker.feed(*row)
    assert not checker.finish_against_head(5, rows[5][3], 6)
    assert checker.problem is not None and checker.problem.offset == 5


def test_fast_canonical_form_equals_the_documented_json_dumps() -> None:
    """The msgspec encoder gives exactly json.dumps(sort_keys, compact, ensure_ascii=False)
    bytes — over every Unicode scalar value, in keys and values — so outside verifiers agree."""
    import json

    def documented(record: object) -> bytes:
        return json.dumps(
            record, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()

    chars = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    for start in range(0, len(chars), 4096):
        piece = chars[start : start + 4096]
        record = {
            piece[:3]: piece,
            "n": [start, -1, 2**62, True, None],
            "z": {"b": "", "a": piece[-5:]},
        }
        assert canonical_json(record) == documented(record)
