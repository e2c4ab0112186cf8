"""How much of a client's address the audit trail keeps: one policy, gateway and store.

``RAGWARD_AUDIT_CLIENT_IP`` chooses:

* ``truncate`` (default): the network, not the host — IPv4 to its /24, IPv6 to
  its /48 (a narrower prefix given is kept). An IPv4 client seen through an IPv6
  socket (``::ffff:203.0.113.7``) is an IPv4 client: ``203.0.113.0/24``. Text that
  is no address becomes ``?``.
* ``hash``: ``hmac:`` + HMAC-SHA-256 under ``RAGWARD_AUDIT_IP_HASH_KEY`` of the
  address in canonical form (IPv4-mapped as IPv4, IPv6 compressed and lower
  case), so one client has one hash on every replica, across restarts, however
  its address was spelled — and whoever lacks the key cannot test guesses.
* ``drop``: nothing.

The gateway applies the policy before the audit event leaves it, so no raw
address reaches Kafka; the audit store applies it again to what it receives
(events of other producers, or written before this policy). Applying it twice
changes nothing: a truncated network truncates to itself, an ``hmac:`` value is
kept as it is under ``hash`` (and dropped under the other modes).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from ragward.errors import ConfigError
from ragward.settings import Settings, env_name

__all__ = ["ClientAddressPolicy", "truncate_address"]

HASHED = "hmac:"
_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}")


@dataclass(frozen=True, slots=True)
class ClientAddressPolicy:
    """How a client address is kept: truncated to its network, keyed hash, or dropped."""

    mode: Literal["truncate", "hash", "drop"] = "truncate"
    key: bytes | None = None

    def __post_init__(self) -> None:
        if self.mode == "hash" and not self.key:
            raise ConfigError(f"{env_name('audit_ip_hash_key')} must be set when "
                              f"{env_name('audit_client_ip')}=hash")

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientAddressPolicy:
        key = settings.audit_ip_hash_key
        return cls(settings.audit_client_ip, key.get_secret_value().encode() if key else None)

    def apply(self, addr: str) -> str:
        addr = addr.strip()
        if not addr or self.mode == "drop":
            return ""
        if addr.startswith(HASHED):  # already hashed upstream
            return addr if self.mode == "hash" else ""
        if self.mode == "hash":
            assert self.key is not None  # __post_init__
            return _keyed_hash(self.key, addr)
        return truncate_address(addr)


@functools.lru_cache(maxsize=65_536)  # clients repeat; hashing each request shows up
def _keyed_hash(key: bytes, addr: str) -> str:
    return HASHED + hmac.new(key, _canonical(addr).encode(), hashlib.sha256).hexdigest()


def _canonical(addr: str) -> str:
    """One spelling per address (IPv4-mapped as IPv4, IPv6 compressed, lower case);
    text that is no address stays as it is."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@functools.lru_cache(maxsize=65_536)
def truncate_address(addr: str) -> str:
    """IPv4 to its /24, IPv6 to its /48 (narrower prefixes kept); '?' if not an address."""
    plain = _IPV4.fullmatch(addr)
    if plain and all(int(octet) <= 255 for octet in plain.groups()) and not any(
        len(octet) > 1 and octet[0] == "0" for octet in plain.groups()
    ):
        return f"{int(plain[1])}.{int(plain[2])}.{int(plain[3])}.0/24"
    try:
        net = ipaddress.ip_network(addr, strict=False)
    except ValueError:
        return "?"
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
        # ::ffff:0:0/96 is the whole IPv4 space: an IPv6 prefix past 96 bits is IPv4's
        ipv4 = net.network_address.ipv4_mapped
        net = ipaddress.ip_network(f"{ipv4}/{max(0, net.prefixlen - 96)}", strict=False)
    limit = 24 if net.version == 4 else 48
    prefix = min(net.prefixlen, limit)
    return str(net.supernet(new_prefix=prefix) if prefix < net.prefixlen else net)
