"""What an audit record keeps: the PCI fields, the address policy, nothing raw."""

from __future__ import annotations

import json

import pytest

from ragward.errors import ConfigError
from ragward.settings import load_settings
from telemetry.audit_record import build_record, parse_ts_us
from telemetry.bus import Record
from telemetry.client_address import ClientAddressPolicy, truncate_address
from telemetry.events import AuditEvent, encode


@pytest.mark.parametrize(
    ("addr", "kept"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("10.1.2.0/16", "10.1.0.0/16"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
        ("not-an-ip", "?"),
    ],
)
def test_truncation_keeps_at_most_the_network(addr: str, kept: str) -> None:
    """IPv4 to /24, IPv6 to /48; an already narrower prefix stays; junk becomes '?'."""
    assert truncate_address(addr) == kept


def test_hash_policy_needs_its_key_and_is_stable() -> None:
    """Hashing without RAGWARD_AUDIT_IP_HASH_KEY fails at start-up; with it, equal in, equal out."""
    with pytest.raises(ConfigError, match="RAGWARD_AUDIT_IP_HASH_KEY"):
        ClientAddressPolicy.from_settings(load_settings(audit_client_ip="hash"))
    policy = ClientAddressPolicy.from_settings(
        load_settings(audit_client_ip="hash", audit_ip_hash_key="k" * 32)
    )
    hashed = policy.apply("203.0.113.77")
    assert hashed.startswith("hmac:") and hashed == policy.apply("203.0.113.77")
    assert "203.0.113" not in hashed
    assert ClientAddressPolicy("drop").apply("203.0.113.77") == ""


def test_record_has_pci_fields_and_no_raw_question() -> None:
    """who/what/when/where/outcome kept; redacted text dropped; non-hash "hashes" hashed."""
    event = AuditEvent(
        event_id="e1",
        request_id="r1",
        ts="2025-01-02T03:04:05.123456Z",
        tenant="acme",
        subject="alice",
        roles=["reader"],
        method="POST",
        route="/v1/query",
        action="query",
        index="default",
        client_addr="203.0.113.7",
        user_agent="x" * 2000,
        status=403,
        decision="deny",
        reason="forbidden",
        latency_ms=12.3456,
        cached=False,
        question_sha256=["my card is 4111 1111 1111 1111"],
        questions_redacted=["<EMAIL_1>"],
        redactions={"CREDIT_CARD": 1},
    )
    built = build_record(Record("t", 2, 41, b"acme", encode(event), 0), ClientAddressPolicy())
    r = built.record
    assert (r["subject"], r["tenant"], r["roles"]) == ("alice", "acme", ["reader"])
    assert (r["route"], r["action"], r["index"], r["method"]) == (
        "/v1/query",
        "query",
        "default",
        "POST",
    )
    assert (r["status"], r["decision"], r["reason"]) == (403, "deny", "forbidden")
    assert (r["partition"], r["offset"], r["latency_us"]) == (2, 41, 12346)
    assert r["client_addr"] == "203.0.113.0/24" and len(r["user_agent"]) == 512
    assert "questions_redacted" not in r and "4111" not in json.dumps(r)
    assert len(r["question_sha256"][0]) == 64
    assert built.ts_us == parse_ts_us("2025-01-02T03:04:05.123456Z")
    assert not any(isinstance(v, float) for v in r.values())


def test_bad_time_falls_back_to_kafka_time_and_says_so() -> None:
    """An unparseable ts is replaced by the Kafka timestamp and flagged, so queries still order."""
    event = AuditEvent(event_id="e", request_id="r", ts="yesterday")
    built = build_record(
        Record("t", 0, 0, None, encode(event), 1_700_000_000_000), ClientAddressPolicy()
    )
    assert built.record["ts_invalid"] is True
    assert built.ts_us == 1_700_000_000_000_000
