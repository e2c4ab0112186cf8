"""What the audit store hands back: chain heads, checkpoints, append and verify reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from telemetry.audit_chain import ChainBreak
from telemetry.audit_store.signatures import SignatureReport


@dataclass(frozen=True, slots=True)
class ChainHead:
    partition: int
    offset: int
    hash: str
    count: int
    max_ts_us: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    partition: int
    offset: int
    hash: str
    count: int
    ts_us: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    written: int = 0
    duplicates: int = 0
    malformed: int = 0
    checkpoints: int = 0


@dataclass(slots=True)
class PartitionReport:
    partition: int
    records: int
    head: ChainHead | None
    anchor_offset: int
    problem: ChainBreak | None = None


@dataclass(slots=True)
class VerifyReport:
    partitions: list[PartitionReport] = field(default_factory=list)
    records: int = 0
    seconds: float = 0.0
    signatures: SignatureReport | None = None  # None: signatures were not checked

    @property
    def ok(self) -> bool:
        return all(p.problem is None for p in self.partitions) and (
            self.signatures is None or self.signatures.ok)

    @property
    def problems(self) -> list[ChainBreak]:
        return [p.problem for p in self.partitions if p.problem is not None]
