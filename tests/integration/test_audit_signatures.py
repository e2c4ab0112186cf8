"""Signatures in the audit store, on SQLite and PostgreSQL: each record keeps its gateway
signature; `ragward audit verify` checks chain and signatures; key rotation; an older
store gains the columns; what only signatures catch (a rewritten, re-chained store)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragward.settings import Settings
from telemetry import audit_cli
from telemetry.audit_chain import GENESIS_HASH, canonical_json, chain_hash
from telemetry.audit_store import AuditBackend, open_backend
from telemetry.bus import Record
from telemetry.configuration import audit_store_config
from telemetry.event_keys import load_key_set, write_pair
from telemetry.events import encode
from telemetry.signing import EventSigner
from tests import audit_support
from tests.audit_support import doc_verifier, make_event, raw_execute
from tests.conftest import TEST_SECRET
from tests.signing_support import TEST_KEY_ID, sign

audit_target = audit_support.audit_target
audit_settings = audit_support.audit_settings
backend = audit_support.backend


def _records(values: list[bytes], partition: int = 0, start: int = 0) -> list[Record]:
    return [Record("audit", partition, start + i, b"acme", v, 1_700_000_000_000 + i)
            for i, v in enumerate(values)]


def _cli_verify(settings: Settings, capsys: pytest.CaptureFixture[str],
                **flags: Any) -> tuple[int, str]:
    code = audit_cli.verify(settings, argparse.Namespace(no_signatures=False, **flags))
    return code, capsys.readouterr().out


def test_records_keep_their_signature_and_verify_checks_it(
    backend: AuditBackend, audit_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each stored record holds key_id, signature and the signed view; `audit verify`
    (chain + signatures) passes and says how many signatures it checked."""
    backend.append(audit_support.as_records([make_event(i) for i in range(9)]))
    lines = list(backend.export())
    assert {line["key_id"] for line in lines} == {TEST_KEY_ID}
    assert all("203.0.113" not in line["signed_event"] for line in lines)  # sealed, not kept
    code, out = _cli_verify(audit_settings, capsys)
    assert code == 0, out
    assert "signatures: 9 verified, 0 failed, 0 unsigned" in out


def test_rotation_old_and_new_records_verify_until_the_old_key_is_removed(
    backend: AuditBackend, audit_settings: Settings, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Records signed before and after a rotation all verify with both keys in the set;
    without the old key, exactly the old records fail, each naming its key id."""
    key_set = tmp_path / "rotation" / "keys.json"
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    write_pair(key_set.parent, old_key, "gw-2025", key_set)
    write_pair(key_set.parent, new_key, "gw-2026", key_set)
    old, new = EventSigner(old_key, "gw-2025"), EventSigner(new_key, "gw-2026")
    backend.append(_records([old.sign(make_event(i)) for i in range(4)]))
    backend.append(_records([new.sign(make_event(i)) for i in range(4, 7)], start=4))
    both = audit_settings.model_copy(update={"event_keys": str(key_set)})
    code, out = _cli_verify(both, capsys)
    assert code == 0 and "signatures: 7 verified, 0 failed" in out, out

    document = json.loads(key_set.read_text())
    document["keys"] = [k for k in document["keys"] if k["kid"] != "gw-2025"]
    key_set.write_text(json.dumps(document))
    code, out = _cli_verify(both, capsys)
    assert code == 1
    failures = [line for line in out.splitlines() if line.startswith("SIGNATURE")]
    assert len(failures) == 4 and all("'gw-2025'" in line for line in failures), out
    assert [f"offset {i}:" in failures[i] for i in range(4)] == [True] * 4
    assert "signatures: 3 verified, 4 failed" in out


def test_key_not_after_bounds_what_a_key_may_have_signed(
    backend: AuditBackend, audit_settings: Settings, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A retired key (not_after) still verifies what it signed before, not after."""
    key_set = tmp_path / "keys.json"
    key = Ed25519PrivateKey.generate()
    write_pair(tmp_path, key, "gw-old", key_set)
    document = json.loads(key_set.read_text())
    document["keys"][0]["not_after"] = "2024-06-01T00:00:00Z"
    key_set.write_text(json.dumps(document))
    signer = EventSigner(key, "gw-old")
    backend.append(_records([signer.sign(make_event(0, ts="2024-05-01T00:00:00Z")),
                             signer.sign(make_event(1, ts="2024-07-01T00:00:00Z"))]))
    code, out = _cli_verify(audit_settings.model_copy(update={"event_keys": str(key_set)}),
                            capsys)
    assert code == 1 and "signatures: 1 verified, 1 failed" in out
    assert "offset 1: key_expired" in out


def test_a_rewritten_store_with_a_recomputed_chain_fails_on_its_signatures(
    backend: AuditBackend, audit_settings: Settings, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whoever can write the store can recompute the chain; only the signatures then show
    the edit — in `audit verify` and in the outside verifier of docs/audit.md."""
    backend.append(_records([sign(make_event(i)) for i in range(5)]))
    rows = [line for line in backend.export()]
    prev = GENESIS_HASH
    for line in rows:  # the forger edits record 2 and re-chains every row after it
        record = line["record"]
        if line["offset"] == 2:
            record["subject"] = "someone-else"
        digest = chain_hash(prev, canonical_json(record))
        raw_execute(backend, "UPDATE audit_records SET record = ?, subject = ?, prev_hash = ?,"
                    " hash = ? WHERE kafka_partition = 0 AND kafka_offset = ?",
                    (canonical_json(record).decode(), record["subject"], prev, digest,
                     line["offset"]))
        prev = digest
    raw_execute(backend, "UPDATE audit_chain_heads SET hash = ?", (prev,))
    assert backend.verify().ok  # the chain alone is fooled
    code, out = _cli_verify(audit_settings, capsys)
    assert code == 1 and "offset 2: the signed event" in out and "does not match" in out
    script = tmp_path / "verify_audit_export.py"
    script.write_text(doc_verifier())
    export = tmp_path / "audit.jsonl"
    assert audit_cli.export(audit_settings, argparse.Namespace(
        output=export, since=None, until=None)) == 0
    bad = subprocess.run([sys.executable, str(script), str(export)], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "offset 2: the record differs" in bad.stderr, bad.stderr


def test_an_older_store_gains_the_signature_columns_and_its_records_stay_valid(
    audit_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store made before signing (no signature columns, unsigned rows) opens: the columns
    are added, its rows count as unsigned and verify; signed rows follow; an unsigned row
    slipped in after them fails."""
    old = open_backend(audit_store_config(audit_settings))
    try:
        old.append(_records([encode(make_event(i)) for i in range(3)]))  # before signing
        for column in ("key_id", "signature", "signed_event"):  # as the old schema was
            old.conn().execute(f"ALTER TABLE audit_records DROP COLUMN {column}")
        old.close()
        legacy = open_backend(audit_store_config(audit_settings))  # the migration runs on connect
        assert legacy.count() == 3
        legacy.append(_records([sign(make_event(i)) for i in range(3, 5)],
                               start=3))
        code, out = _cli_verify(audit_settings, capsys)
        assert code == 0 and "signatures: 2 verified, 0 failed, 3 unsigned" in out, out
        legacy.append(_records([encode(make_event(9))], start=5))
        code, out = _cli_verify(audit_settings, capsys)
        assert code == 1 and "offset 5: unsigned record after signed ones" in out
        legacy.close()
    finally:
        old.close()


def test_keys_generate_writes_a_private_key_and_extends_the_key_set(tmp_path: Path) -> None:
    """`ragward keys generate` makes KID.pem (0600) and adds the public key to the set; the
    same kid twice is refused (a key is never overwritten)."""
    out, key_set = tmp_path / "keys", tmp_path / "event-keys.json"
    run = [sys.executable, "-m", "ragward.cli", "keys", "generate", "--out", str(out),
           "--key-set", str(key_set)]
    first = subprocess.run([*run, "--kid", "gw-a"], capture_output=True, text=True)
    second = subprocess.run([*run, "--kid", "gw-b"], capture_output=True, text=True)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert (out / "gw-a.pem").stat().st_mode & 0o777 == 0o600
    assert sorted(load_key_set(str(key_set), "test").keys) == ["gw-a", "gw-b"]
    again = subprocess.run([*run, "--kid", "gw-a"], capture_output=True, text=True)
    assert again.returncode == 2 and "gw-a" in again.stderr


def test_split_processes_on_kafka_without_keys_stop_with_one_line(tmp_path: Path) -> None:
    """`ragward gateway` and `ragward consumer audit` on Kafka with no keys configured exit 2
    before serving, each with one line naming the setting (nothing unsigned is ever made or
    trusted in split mode)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGWARD_")}
    env |= {"RAGWARD_KAFKA_BOOTSTRAP": "127.0.0.1:9", "RAGWARD_DATA_DIR": str(tmp_path),
            "RAGWARD_JWT_SECRET": TEST_SECRET, "RAGWARD_RAG_CORE_URL": "http://127.0.0.1:9"}
    for args, setting in ((["gateway"], "RAGWARD_EVENT_SIGNING_KEY"),
                          (["consumer", "audit", "--port", "0"], "RAGWARD_EVENT_KEYS")):
        result = subprocess.run([sys.executable, "-m", "ragward.cli", *args], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"ragward: {setting}")
