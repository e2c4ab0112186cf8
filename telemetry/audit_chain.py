"""The audit log's hash chain: canonical JSON, chain hashes, and the check of a chain.

One chain per Kafka partition of the audit topic, in Kafka (partition, offset)
order. For the n-th record of a partition::

    canonical(record) = json.dumps(record, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False).encode("utf-8")
    hash_n            = SHA-256(prev_raw || canonical(record_n))
    prev_raw          = the 32 raw bytes of hash_{n-1}; 32 zero bytes for the first record

Hashes are stored and exported as 64 lowercase hex digits; the chain hashes the
*raw* 32 bytes of the previous hash, not its hex text. Records hold only strings,
integers, booleans, null, lists and objects (no floats), so every JSON library
canonicalises them the same way. ``docs/audit.md`` has an outside verifier.

:class:`ChainChecker` checks one partition's records in order against an anchor
(genesis, or the retained checkpoint that retention left in front of them), and
reports the first broken record by partition and offset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

HASH_BYTES = 32
GENESIS_HASH = "00" * HASH_BYTES


_encoder = msgspec.json.Encoder(order="sorted")


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a record: sorted keys, no whitespace, UTF-8.

    Byte for byte what ``json.dumps(record, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode("utf-8")`` gives for our records (a unit test holds
    the two together over every code point); msgspec only makes it ~20x faster.
    """
    try:
        return _encoder.encode(record)
    except (TypeError, OverflowError):  # e.g. a huge integer in a tampered record
        return json.dumps(
            record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """``SHA-256(raw(prev_hash) || canonical)`` as lowercase hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a partition's stored chain starts: genesis or a retained checkpoint."""

    offset: int  # offset of the record the anchor hash belongs to; -1 for genesis
    hash: str
    count: int  # records in the chain up to and including ``offset``

    @classmethod
    def genesis(cls) -> Anchor:
        return cls(offset=-1, hash=GENESIS_HASH, count=0)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first record (by partition and offset) where a chain does not hold."""

    partition: int
    offset: int
    problem: str

    def __str__(self) -> str:
        return f"partition {self.partition} offset {self.offset}: {self.problem}"


class ChainChecker:
    """Feed one partition's stored rows in offset order; the first problem is kept.

    A row is ``(offset, record_json_text, prev_hash, hash, count)``. The checker
    recomputes each hash from the stored text's canonical form, checks that each
    row links to the one before it, and that the stored count runs on from the
    anchor, so a changed, inserted or deleted row is named by its offset.
    """

    def __init__(
        self,
        partition: int,
        anchor: Anchor,
        checkpoints: Sequence[tuple[int, str, int]] = (),
    ) -> None:
        self.partition = partition
        self.anchor = anchor
        self.last_offset = anchor.offset
        self.last_hash = anchor.hash
        self.count = anchor.count
        self.checked = 0
        self.problem: ChainBreak | None = None
        self.last_record: dict[str, Any] = {}
        # checkpoints after the anchor, oldest first: (offset, hash, count)
        self._checkpoints = sorted(cp for cp in checkpoints if cp[0] > anchor.offset)
        self._next_cp = 0

    def fail(self, offset: int, problem: str) -> bool:
        """Record a problem found outside the chain itself (e.g. an index column)."""
        if self.problem is None:
            self.problem = ChainBreak(self.partition, offset, problem)
        return False

    def feed(self, offset: int, record_text: str, prev_hash: str, hash_: str, count: int) -> bool:
        """Check one row; False once the chain is broken (later rows are ignored)."""
        if self.problem is not None:
            return False
        self.checked += 1
        try:
            record = json.loads(record_text)
        except ValueError:
            return self.fail(offset, "stored record is not valid JSON")
        if not isinstance(record, dict):
            return self.fail(offset, "stored record is not a JSON object")
        if record.get("partition") != self.partition or record.get("offset") != offset:
            return self.fail(offset, "record's partition/offset differ from its position")
        if offset <= self.last_offset:
            return self.fail(offset, f"offset not after the previous {self.last_offset}")
        if prev_hash != self.last_hash:
            before = (
                "the chain anchor"
                if self.last_offset == self.anchor.offset
                else f"the record at offset {self.last_offset}"
            )
            return self.fail(
                offset,
                f"prev_hash does not match {before} (a record before it was deleted, "
                "inserted or altered)",
            )
        try:
            recomputed = chain_hash(prev_hash, canonical_json(record))
        except (ValueError, TypeError, OverflowError):
            return self.fail(offset, "stored record cannot be canonicalised (record altered)")
        if recomputed != hash_:
            return self.fail(offset, "hash does not match the record (record altered)")
        if count != self.count + 1:
            return self.fail(offset, f"chain count {count} where {self.count + 1} was expected")
        if not self._pass_checkpoints(offset, hash_, count):
            return False
        self.last_offset, self.last_hash, self.count = offset, hash_, count
        self.last_record = record
        return True

    def _pass_checkpoints(self, offset: int, hash_: str, count: int) -> bool:
        while self._next_cp < len(self._checkpoints):
            cp_offset, cp_hash, cp_count = self._checkpoints[self._next_cp]
            if cp_offset > offset:
                return True
            self._next_cp += 1
            if cp_offset < offset:
                return self.fail(
                    cp_offset, "checkpoint names a record that is not stored (deleted)"
                )
            if (cp_hash, cp_count) != (hash_, count):
                return self.fail(offset, "checkpoint hash/count differ from the stored record")
        return True

    def finish_against_head(self, head_offset: int, head_hash: str, head_count: int) -> bool:
        """Compare the end of the stored chain with its recorded head."""
        if self.problem is not None:
            return False
        if self._next_cp < len(self._checkpoints):
            cp_offset = self._checkpoints[self._next_cp][0]
            return self.fail(
                cp_offset, "checkpoint names a record that is not stored (newest records deleted)"
            )
        if (self.last_offset, self.last_hash, self.count) != (head_offset, head_hash, head_count):
            if head_offset > self.last_offset:
                return self.fail(
                    head_offset,
                    f"chain head names this record but the stored chain ends at offset "
                    f"{self.last_offset} (newest records deleted)",
                )
            return self.fail(
                self.last_offset if self.last_offset != head_offset else head_offset,
                f"chain head (offset {head_offset}, count {head_count}) does not match the "
                f"stored chain's end (offset {self.last_offset}, count {self.count})",
            )
        return True
