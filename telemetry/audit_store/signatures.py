"""The signature side of ``ragward audit verify``: who produced each stored record.

For each stored row the store keeps the gateway's ``key_id``, ``signature`` and the
``signed_event`` (the canonical signed view, :mod:`telemetry.signing`). A row checks
out when the signature over ``signed_event`` holds under a key of the key set (and
its ``not_after``), and ``signed_event`` describes the hashed record: rebuilt into a
record, it gives the same fields (all but ``client_addr``, which the view holds only
sealed).

Rows written before signing existed have no signature: they are counted as
unsigned, and allowed only before the first signed row of their partition — an
unsigned row after a signed one means a signature was stripped or a row forged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from telemetry.audit_record import build_record, parse_ts_us
from telemetry.bus import Record
from telemetry.client_address import ClientAddressPolicy
from telemetry.signing import KeySet, check_signature

MAX_LISTED = 20
# not comparable with the view: kept there only sealed / a hash of the whole raw value
_UNSEALED = ("client_addr", "value_sha256")


@dataclass(frozen=True, slots=True)
class SignatureFailure:
    partition: int
    offset: int
    problem: str

    def __str__(self) -> str:
        return f"partition {self.partition} offset {self.offset}: {self.problem}"


@dataclass
class SignatureReport:
    signed: int = 0
    unsigned: int = 0
    failed: int = 0
    failures: list[SignatureFailure] = field(default_factory=list)  # the first MAX_LISTED

    @property
    def ok(self) -> bool:
        return self.failed == 0


class SignatureChecker:
    """Feed rows (any order across partitions, offset order within one)."""

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys
        self.report = SignatureReport()
        self._signed_partitions: set[int] = set()
        self._policy = ClientAddressPolicy("drop")

    def _fail(self, partition: int, offset: int, problem: str) -> None:
        self.report.failed += 1
        if len(self.report.failures) < MAX_LISTED:
            self.report.failures.append(SignatureFailure(partition, offset, problem))

    def feed(self, partition: int, offset: int, record: dict[str, Any], key_id: str | None,
             signature: str | None, signed_event: str | None) -> None:
        if key_id is None and signature is None and signed_event is None:
            self.report.unsigned += 1
            if partition in self._signed_partitions:
                self._fail(partition, offset, "unsigned record after signed ones "
                           "(signature removed or record inserted)")
            return
        self._signed_partitions.add(partition)
        if key_id is None or signature is None or signed_event is None:
            self._fail(partition, offset, "signature columns incomplete")
            return
        view = signed_event.encode("utf-8")
        try:
            signed = json.loads(signed_event)
        except ValueError:
            signed = None
        ts = signed.get("ts") if isinstance(signed, dict) else None
        rejection = check_signature(self.keys, key_id, signature, view,
                                    parse_ts_us(ts) if isinstance(ts, str) else None)
        if rejection is not None:
            self._fail(partition, offset, str(rejection))
            return
        if not self._describes(partition, offset, view, record):
            self._fail(partition, offset, f"the signed event (key {key_id!r}) does not match "
                       "the stored record (record altered)")
            return
        self.report.signed += 1

    def _describes(self, partition: int, offset: int, view: bytes,
                   record: dict[str, Any]) -> bool:
        rebuilt = build_record(Record("", partition, offset, None, view, 0), self._policy).record
        if record.get("ts_invalid"):
            rebuilt.pop("ts", None)
            record = {k: v for k, v in record.items() if k != "ts"}
        return all(rebuilt.get(k) == record.get(k)
                   for k in rebuilt.keys() | record.keys() if k not in _UNSEALED)
