"""Signed events (telemetry.signing, telemetry.event_keys, telemetry.dead_letter): what
verifies, what is refused and why, and what the dead-letter topic keeps."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragward.errors import ConfigError
from ragward.settings import load_settings
from telemetry.bus import Record
from telemetry.dead_letter import envelope, original_value
from telemetry.event_keys import (
    RefreshingVerifier,
    load_key_set,
    signer_from_settings,
    verifier_from_settings,
    write_pair,
)
from telemetry.events import AuditEvent, UsageEvent, new_event_id, now_rfc3339
from telemetry.signing import (
    EventSigner,
    EventVerifier,
    KeySet,
    SignedParts,
    check_signature,
    public_jwk,
    signed_parts,
)


def _audit(**fields: object) -> AuditEvent:
    values: dict[str, object] = {
        "event_id": new_event_id(), "request_id": "r-1", "ts": now_rfc3339(), "tenant": "acme",
        "subject": "alice", "status": 200, "latency_ms": 1.25, "client_addr": "203.0.113.9",
        "questions_redacted": ["mail <EMAIL_1>"],
    }
    return AuditEvent(**(values | fields))  # type: ignore[arg-type]


def _pair(kid: str = "gw-1", not_after: str | None = None) -> tuple[EventSigner, KeySet]:
    signer = EventSigner(Ed25519PrivateKey.generate(), kid)
    jwk = public_jwk(kid, signer.public_key, not_after)
    return signer, KeySet.from_document({"keys": [jwk]}, "test")


def test_a_signed_event_verifies_and_still_decodes_as_its_type() -> None:
    """The gateway's bytes verify under its key and decode as the same event (key id on it)."""
    signer, keys = _pair()
    event = _audit()
    wire = signer.sign(event)
    assert EventVerifier(keys).check(wire) is None
    decoded = msgspec.json.decode(wire, type=AuditEvent)
    assert decoded.key_id == "gw-1" and decoded.signature and decoded.seal_salt
    assert msgspec.structs.replace(decoded, key_id=None, signature=None, seal_salt=None) == event
    usage = UsageEvent(event_id="u", request_id="r", ts=now_rfc3339(), cost_usd=0.1)
    assert EventVerifier(keys).check(signer.sign(usage)) is None


@pytest.mark.parametrize(("field", "value"), [
    ("tenant", "globex"), ("status", 500), ("latency_ms", 1.5), ("client_addr", "198.51.100.1"),
    ("questions_redacted", ["other"]), ("key_id", "gw-2"), ("seal_salt", "AAAAAAAAAAAAAAAAAAAAAA"),
    ("sealed", {"client_addr": "00"}), ("extra", 1),
])
def test_any_changed_or_added_member_breaks_the_signature(field: str, value: object) -> None:
    """One member changed (private ones and the salt included) or added: bad_signature
    (or unknown_key for another key id), never accepted."""
    signer, keys = _pair()
    data = json.loads(signer.sign(_audit()))
    data[field] = value
    rejection = EventVerifier(keys).check(json.dumps(data).encode())
    assert rejection is not None
    expected = {"key_id": "unknown_key", "sealed": "malformed"}.get(field, "bad_signature")
    assert rejection.reason == expected


def test_unsigned_foreign_expired_and_garbage_are_refused_with_their_reason() -> None:
    """Each refusal has a stable reason and a detail naming the key id where there is one."""
    signer, keys = _pair(not_after="2020-01-01T00:00:00Z")
    verify = EventVerifier(keys).check
    assert verify(msgspec.json.encode(_audit())).reason == "unsigned"  # type: ignore[union-attr]
    stranger = EventSigner(Ed25519PrivateKey.generate(), "intruder").sign(_audit())
    refused = verify(stranger)
    assert refused is not None and refused.reason == "unknown_key" and "intruder" in str(refused)
    expired = verify(signer.sign(_audit()))
    assert expired is not None and expired.reason == "key_expired" and "gw-1" in expired.detail
    assert verify(signer.sign(_audit(ts="2019-12-31T23:59:59Z"))) is None  # before not_after
    for junk in (b"not json", b"[1]", b'{"signature": 1, "key_id": "gw-1"}'):
        assert verify(junk).reason == "malformed"  # type: ignore[union-attr]


def test_the_signed_view_holds_no_private_value_and_is_all_the_store_needs() -> None:
    """The view (what the store keeps) has the client address and the redacted question only
    as salted seals; the signature verifies over those exact bytes."""
    signer, keys = _pair()
    parts = signed_parts(signer.sign(_audit()))
    assert isinstance(parts, SignedParts)
    view = parts.view.decode()
    assert "203.0.113" not in view and "EMAIL_1" not in view
    assert set(json.loads(view)["sealed"]) == {"client_addr", "questions_redacted"}
    assert check_signature(keys, parts.key_id, parts.signature, parts.view, parts.ts_us) is None


def test_members_a_newer_gateway_adds_are_signed_and_verify() -> None:
    """An event with a member this version does not know still verifies (schema evolution)."""
    signer, keys = _pair()
    newer = signer.sign(msgspec.to_builtins(_audit()) | {"trace_id": "abc"})
    assert EventVerifier(keys).check(newer) is None


def test_key_set_documents_are_checked_naming_the_source(tmp_path: Path) -> None:
    """A bad key set stops start-up naming the setting and the entry."""
    for doc, words in (({"nope": 1}, "key set"), ({"keys": [{"kty": "RSA"}]}, r"keys\[0\]"),
                       ({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "AA"}]},
                        "32-byte"),
                       ({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "a",
                                   "x": "A" * 43, "not_after": "soon"}]}, "not_after")):
        with pytest.raises(ConfigError, match=words) as info:
            KeySet.from_document(doc, "RAGWARD_EVENT_KEYS")
        assert "RAGWARD_EVENT_KEYS" in str(info.value)
    with pytest.raises(ConfigError, match="RAGWARD_EVENT_KEYS: cannot read"):
        load_key_set(str(tmp_path / "missing.json"), "RAGWARD_EVENT_KEYS")
    signer, keys = _pair()
    inline = load_key_set(json.dumps(keys.document()), "RAGWARD_EVENT_KEYS")  # from an env var
    assert EventVerifier(inline).check(signer.sign(_audit())) is None


def test_split_processes_on_kafka_refuse_to_start_without_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key configured and Kafka in use: the gateway and the consumers name the setting."""
    for var in ("RAGWARD_EVENT_SIGNING_KEY_FILE", "RAGWARD_EVENT_KEYS"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(ConfigError, match="RAGWARD_EVENT_SIGNING_KEY"):
        signer_from_settings(settings)
    with pytest.raises(ConfigError, match="RAGWARD_EVENT_KEYS"):
        verifier_from_settings(settings)
    bad = load_settings(data_dir=tmp_path, event_signing_key="-----BEGIN nothing")
    with pytest.raises(ConfigError, match="RAGWARD_EVENT_SIGNING_KEY is not"):
        signer_from_settings(bad)


def test_embedded_default_makes_and_keeps_one_dev_pair(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Without keys and without Kafka (or in `serve`), a dev pair is made once in the data
    dir (private key 0600) and reused: what it signs, its key set verifies."""
    for var in ("RAGWARD_EVENT_SIGNING_KEY_FILE", "RAGWARD_EVENT_KEYS",
                "RAGWARD_EVENT_SIGNING_KEY_ID"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings(data_dir=tmp_path)
    signer = signer_from_settings(settings)
    again = signer_from_settings(load_settings(data_dir=tmp_path, kafka_bootstrap="x:1"),
                                 dev_keys=True)
    assert signer.key_id == again.key_id
    assert (tmp_path / "keys" / "event-signing.pem").stat().st_mode & 0o777 == 0o600
    assert verifier_from_settings(settings).check(signer.sign(_audit())) is None


async def test_refreshing_verifier_picks_up_a_key_added_for_a_rotation(tmp_path: Path) -> None:
    """An unknown key id loads the set again, at most once per interval: a new key works
    without a restart, and an unknown id within the interval costs no load."""
    key_set = tmp_path / "keys.json"
    write_pair(tmp_path, Ed25519PrivateKey.generate(), "old", key_set)
    now, loads = [0.0], [0]

    async def fetch() -> KeySet:
        loads[0] += 1
        return load_key_set(str(key_set), "test")

    verifier = RefreshingVerifier(fetch, load_key_set(str(key_set), "test"),
                                  min_interval_s=30.0, clock=lambda: now[0])
    new_key = Ed25519PrivateKey.generate()
    write_pair(tmp_path, new_key, "new", key_set)
    event = EventSigner(new_key, "new").sign(_audit())
    assert (await verifier.verify(event)).reason == "unknown_key"  # type: ignore[union-attr]
    assert loads == [0]  # the start-up load was at t=0
    now[0] = 31.0
    assert await verifier.verify(event) is None
    assert loads == [1]


def test_dead_letters_keep_the_reason_and_the_exact_original_bytes() -> None:
    """UTF-8 values stay readable, others base64; either way the bytes come back exactly."""
    for value in (b'{"type":"audit","x":"\xc3\xa9"}', b"\xff\xfe binary"):
        record = Record("ragward.audit.v1", 2, 7, b"acme", value, 1_700_000_000_000)
        letter = envelope(record, "bad_signature", "does not match", "ragward-audit", "gw-1")
        data = json.loads(letter)
        assert (data["reason"], data["key_id"], data["partition"], data["offset"]) == (
            "bad_signature", "gw-1", 2, 7)
        assert original_value(letter) == value


def test_serve_refuses_a_signing_key_its_own_verifiers_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ragward serve` with a key set that lacks its signing key (here: the dev key against
    a configured set) stops at start-up instead of dead-lettering everything it makes."""
    from ragward.serve import create_serve_app

    monkeypatch.delenv("RAGWARD_EVENT_SIGNING_KEY_FILE", raising=False)
    monkeypatch.delenv("RAGWARD_EVENT_SIGNING_KEY_ID", raising=False)
    settings = load_settings(data_dir=tmp_path, jwt_secret="x" * 40, rag_core_url="http://x:1")
    with pytest.raises(ConfigError, match="is not in the key set RAGWARD_EVENT_KEYS"):
        create_serve_app(settings)
