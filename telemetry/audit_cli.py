"""``ragward audit verify|query|export|replay`` (docs/cli.md).

Each handler is ``handler(settings, args) -> int``: 0 on success, 1 when the
audit log fails verification or a replay is refused, 2 on bad input (one line
on stderr saying why). Results go to stdout; progress bars and logs to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from ragward.errors import ConfigError, RagwardError
from ragward.settings import Settings
from telemetry.audit_record import parse_ts_us
from telemetry.audit_store import AuditQuery, ChainHead, open_backend
from telemetry.configuration import audit_store_config
from telemetry.event_keys import key_set_from_settings


def _fail(message: str, code: int = 2) -> int:
    print(f"ragward: {message}", file=sys.stderr)
    return code


def _print_heads(heads: Iterable[ChainHead], out: TextIO) -> None:
    for h in heads:
        print(
            f"  partition {h.partition}: head offset {h.offset} count {h.count} hash {h.hash}",
            file=out,
        )


def verify(settings: Settings, args: argparse.Namespace) -> int:
    """Recompute every chain and check every signature; exit 1 naming the first broken
    record of each partition and each record whose signature fails."""
    keys = None if getattr(args, "no_signatures", False) else key_set_from_settings(settings)
    backend = open_backend(audit_store_config(settings))
    try:
        with tqdm(desc="verify", unit="rec", file=sys.stderr, disable=None) as bar:
            report = backend.verify(progress=bar.update, keys=keys)
    finally:
        backend.close()
    rate = report.records / report.seconds if report.seconds > 0 else 0.0
    for part in report.partitions:
        status = "BROKEN" if part.problem else "ok"
        head = (
            f"head offset {part.head.offset} count {part.head.count} hash {part.head.hash}"
            if part.head
            else "no head"
        )
        anchor = (
            "genesis" if part.anchor_offset < 0 else f"checkpoint at offset {part.anchor_offset}"
        )
        print(f"partition {part.partition}: {status}: {part.records} records from {anchor}, {head}")
    for problem in report.problems:
        print(f"BROKEN {problem}")
    sigs = report.signatures
    if sigs is not None:
        for failure in sigs.failures:
            print(f"SIGNATURE {failure}")
        more = sigs.failed - len(sigs.failures)
        if more > 0:
            print(f"SIGNATURE ... and {more} more")
        print(f"signatures: {sigs.signed} verified, {sigs.failed} failed, {sigs.unsigned} "
              f"unsigned (written before signing) with keys {sorted(keys.keys) if keys else []}")
    else:
        print("signatures: not checked (--no-signatures)")
    print(
        f"{'verified' if report.ok else 'checked'} {report.records} records in "
        f"{len(report.partitions)} partitions in "
        f"{report.seconds:.2f} s ({rate:,.0f} records/s): " + ("OK" if report.ok else "FAILED")
    )
    return 0 if report.ok else 1


_TABLE = (
    ("ts", 27),
    ("tenant", 12),
    ("subject", 16),
    ("route", 16),
    ("action", 10),
    ("status", 6),
    ("decision", 12),
    ("request_id", 32),
    ("position", 10),
)


def _cell(record: dict[str, Any], name: str) -> str:
    if name == "position":
        return f"{record.get('partition')}:{record.get('offset')}"
    value = record.get(name)
    return "-" if value is None else str(value)


def query(settings: Settings, args: argparse.Namespace) -> int:
    """Print records matching the filters, newest first, as a table or JSON."""
    filters = AuditQuery(
        tenant=args.tenant,
        subject=args.subject,
        request_id=args.request_id,
        since=args.since,
        until=args.until,
        limit=args.limit,
    )
    backend = open_backend(audit_store_config(settings))
    try:
        page = backend.query(filters)
    except RagwardError as exc:
        return _fail(exc.message)
    finally:
        backend.close()
    if args.format == "json":
        json.dump(
            {"records": page.records, "next_cursor": page.next_cursor},
            sys.stdout,
            ensure_ascii=False,
            indent=2,
        )
        print()
        return 0
    print("  ".join(name.ljust(width) for name, width in _TABLE))
    for record in page.records:
        print("  ".join(_cell(record, name)[:width].ljust(width) for name, width in _TABLE))
    more = " (more: raise --limit or narrow the time range)" if page.next_cursor else ""
    print(f"{len(page.records)} records{more}", file=sys.stderr)
    return 0


def export(settings: Settings, args: argparse.Namespace) -> int:
    """Write JSONL: first ``{"keys": [...]}`` (the public keys that verify the records),
    then one line per record with the chain fields and its signature (docs/audit.md has
    an outside verifier)."""
    keys = key_set_from_settings(settings)
    backend = open_backend(audit_store_config(settings))
    out: TextIO = sys.stdout
    lines = 0
    try:
        if args.output is not None:
            out = Path(args.output).open("w", encoding="utf-8")  # noqa: SIM115 (closed below)
        out.write(json.dumps(keys.document(), separators=(",", ":")) + "\n")
        for line in backend.export(args.since, args.until):
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
            lines += 1
    except RagwardError as exc:
        return _fail(exc.message)
    finally:
        if out is not sys.stdout:
            out.close()
        backend.close()
    print(f"exported {lines} records", file=sys.stderr)
    return 0


def replay(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild a fresh store from the Kafka audit topic, from an offset or a time."""
    from telemetry.audit_replay import StoreNotEmpty, replay_topic
    from telemetry.event_keys import verifier_from_settings
    from telemetry.kafka_security import KafkaSecurity

    if not settings.kafka_bootstrap:
        raise ConfigError("RAGWARD_KAFKA_BOOTSTRAP must be set for `ragward audit replay`")
    from_time_ms = None
    if args.from_time:
        ts_us = parse_ts_us(args.from_time)
        if ts_us is None:
            return _fail(f"--from-time {args.from_time!r} is not an RFC 3339 time")
        from_time_ms = ts_us // 1000
    if args.from_offset is not None and args.from_offset < 0:
        return _fail("--from-offset must be >= 0")
    backend = open_backend(audit_store_config(settings, args.store))
    try:
        result = asyncio.run(
            replay_topic(
                settings.kafka_bootstrap,
                settings.topic_audit,
                backend,
                from_offset=args.from_offset,
                from_time_ms=from_time_ms,
                security=KafkaSecurity.from_settings(settings),
                verifier=verifier_from_settings(settings),
            )
        )
        heads = backend.heads()
    except StoreNotEmpty as exc:
        return _fail(exc.message, 1)
    except RagwardError as exc:
        return _fail(exc.message)
    finally:
        backend.close()
    rate = result.records / result.seconds if result.seconds > 0 else 0.0
    print(
        f"replayed {result.records} records ({result.written} written, "
        f"{result.duplicates} duplicates, {result.rejected} refused: signature) into "
        f"{backend.description} in "
        f"{result.seconds:.2f} s ({rate:,.0f} records/s)"
    )
    print(f"  start offsets {result.start_offsets}, end offsets {result.end_offsets}")
    for reason, count in sorted(result.rejections.items()):
        print(f"  refused {count} records: {reason} (not stored; the consumer dead-lettered "
              "them)")
    _print_heads(heads, sys.stdout)
    return 0
