"""The client-address policy the gateway and the audit store share."""

from __future__ import annotations

import pytest

from ragward.errors import ConfigError
from telemetry.client_address import ClientAddressPolicy

KEY = b"k" * 32


@pytest.mark.parametrize(("addr", "kept"), [
    ("198.51.100.9", "198.51.100.0/24"),
    ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
    ("::ffff:198.51.100.9", "198.51.100.0/24"),  # an IPv4 client on a dual-stack socket
    ("::FFFF:C633:6409", "198.51.100.0/24"),  # the same, spelt in hex
    ("::1", "::/48"),
    ("::ffff:198.51.100.0/120", "198.51.100.0/24"),  # a mapped network stays that network
])
def test_truncate_keeps_the_network_of_ipv4_ipv6_and_ipv4_mapped_clients(
    addr: str, kept: str
) -> None:
    """IPv4 to /24, IPv6 to /48, an IPv4-mapped IPv6 address as the IPv4 client it is
    (not ``::/48``); applying the policy again changes nothing (the store re-applies it
    to what the gateway sent)."""
    policy = ClientAddressPolicy("truncate")
    assert policy.apply(addr) == kept
    assert policy.apply(policy.apply(addr)) == kept


def test_hash_is_keyed_stable_and_one_per_client_however_spelt() -> None:
    """``hmac:`` + HMAC-SHA-256 under the configured key: the same on every instance
    built with the key, one value for the spellings of one address, another under
    another key; hashing a hash returns it unchanged (no double HMAC in the store)."""
    one, other = ClientAddressPolicy("hash", KEY), ClientAddressPolicy("hash", KEY)
    hashed = one.apply("198.51.100.9")
    assert hashed.startswith("hmac:") and "198.51.100" not in hashed
    assert other.apply("198.51.100.9") == hashed == one.apply("::ffff:198.51.100.9")
    assert one.apply("2001:DB8::1") == one.apply("2001:db8:0::1")
    assert ClientAddressPolicy("hash", b"x" * 32).apply("198.51.100.9") != hashed
    assert one.apply(hashed) == hashed
    assert ClientAddressPolicy("truncate").apply(hashed) == ""


def test_hash_without_a_key_and_drop() -> None:
    """``hash`` without RAGWARD_AUDIT_IP_HASH_KEY cannot be built (start-up fails, in the
    gateway as in the store); ``drop`` keeps nothing."""
    with pytest.raises(ConfigError, match=r"^RAGWARD_AUDIT_IP_HASH_KEY must be set"):
        ClientAddressPolicy("hash")
    assert ClientAddressPolicy("drop").apply("198.51.100.9") == ""
