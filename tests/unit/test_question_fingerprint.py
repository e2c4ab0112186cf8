"""Keyed question hashes in the audit trail, the cache key's encoding, legacy records."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.cache import cache_key
from gateway.fingerprint import QuestionHasher, normalise_question
from ragward.errors import ConfigError
from ragward.settings import load_settings
from telemetry.audit_record import build_record
from telemetry.bus import Record
from telemetry.client_address import ClientAddressPolicy
from telemetry.events import AuditEvent, audit_decoder, encode

KEY = "k" * 40


def test_question_hmac_is_keyed_and_taken_over_the_normalised_text() -> None:
    """The hash is HMAC-SHA256 under the configured key of the normalised text: another key
    gives another hash, and case, width and spacing do not matter."""
    hasher = QuestionHasher.from_settings(load_settings(audit_hash_key=KEY))
    text = "How many  days of LEAVE, <PHONE_1>?"
    assert hasher(text) == hmac.new(KEY.encode(), normalise_question(text).encode(),
                                    hashlib.sha256).hexdigest()
    assert hasher(text) == hasher("how many days of leave, <PHONE_1>?")
    assert hasher(text) != hashlib.sha256(text.encode()).hexdigest()
    assert hasher(text) != QuestionHasher(b"another key of enough length!!!!")(text)


def test_without_a_key_each_process_draws_one_and_says_so() -> None:
    """Unset: a random key per hasher (nobody can recompute the hashes), with a warning
    naming RAGWARD_AUDIT_HASH_KEY."""
    with capture_logs() as logs:
        first = QuestionHasher.from_settings(load_settings())
        second = QuestionHasher.from_settings(load_settings())
    assert first("q") != second("q")
    warnings = [e for e in logs if e["event"] == "audit_hash_key_unset"]
    assert len(warnings) == 2 and "RAGWARD_AUDIT_HASH_KEY" in warnings[0]["hint"]


def test_without_a_key_replicas_sharing_the_jwt_secret_agree() -> None:
    """Unset but an HS256 secret configured: every replica derives the same key from it (so
    equal questions match across gateways and restarts), a key of its own purpose, not the
    JWT secret itself, and no warning."""
    secret = "s" * 40
    with capture_logs() as logs:
        one = QuestionHasher.from_settings(load_settings(jwt_secret=secret))
        two = QuestionHasher.from_settings(load_settings(jwt_secret=secret))
    assert one("q") == two("q")
    assert one("q") != QuestionHasher(secret.encode())("q")
    assert one("q") != QuestionHasher.from_settings(load_settings(jwt_secret="t" * 40))("q")
    assert not [e for e in logs if e["event"] == "audit_hash_key_unset"]


@pytest.mark.parametrize("value", ["changeme", "short-key"])
def test_a_weak_hash_key_stops_start_up_naming_the_variable(value: str) -> None:
    """Placeholders and keys under 32 characters are refused, like the JWT secret."""
    with pytest.raises(ConfigError, match="RAGWARD_AUDIT_HASH_KEY"):
        load_settings(audit_hash_key=value)


@given(st.tuples(st.text(), st.text(), st.text(), st.integers(1, 20), st.text()),
       st.tuples(st.text(), st.text(), st.text(), st.integers(1, 20), st.text()))
def test_cache_keys_of_different_tuples_never_collide(
    a: tuple[str, str, str, int, str], b: tuple[str, str, str, int, str]
) -> None:
    """The key material is an unambiguous encoding: no tenant, index or version holding a
    separator can make two different (normalised) tuples share a cache entry."""
    na = (*a[:4], normalise_question(a[4]))
    nb = (*b[:4], normalise_question(b[4]))
    assert (cache_key(*a) == cache_key(*b)) == (na == nb)


def test_separator_in_a_tenant_cannot_reach_another_tenants_entry() -> None:
    """The example the old \\x1f-joined key got wrong."""
    one = cache_key("a\x1fdefault", "v", "1", 3, "q")
    assert one != cache_key("a", "default\x1fv", "1", 3, "q")


def test_legacy_events_keep_the_record_they_always_made() -> None:
    """An event written before question_hmac (it has question_sha256) becomes the version 1
    record with question_sha256, as the old store holds it — so a replay of an old topic
    rebuilds the same chain; a new event makes a version 2 record with question_hmac."""
    old_value = json.dumps({"type": "audit", "event_id": "e1", "request_id": "r1",
                            "ts": "2025-01-02T03:04:05Z", "question_sha256": ["ab" * 32]})
    legacy = build_record(Record("t", 0, 1, b"acme", old_value.encode(), 0),
                          ClientAddressPolicy()).record
    assert legacy["record_version"] == 1 and legacy["question_sha256"] == ["ab" * 32]
    assert "question_hmac" not in legacy
    new = AuditEvent(event_id="e2", request_id="r2", ts="2025-01-02T03:04:05Z",
                     question_hmac=["cd" * 32])
    assert b"question_sha256" not in encode(new)  # never written
    record = build_record(Record("t", 0, 2, b"acme", encode(new), 0),
                          ClientAddressPolicy()).record
    assert record["record_version"] == 2 and record["question_hmac"] == ["cd" * 32]
    assert "question_sha256" not in record
    assert audit_decoder.decode(encode(new)).question_hmac == ["cd" * 32]
