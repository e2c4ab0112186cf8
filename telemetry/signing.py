"""Signed events: the gateway signs every audit, usage and status event; consumers verify.

What is signed (Ed25519, ``cryptography``) is the event's *signed view*, in canonical
JSON (:func:`telemetry.audit_chain.canonical_json`: sorted keys, no whitespace, UTF-8)::

    view = the event's JSON object without "signature" and "seal_salt",
           each private field (client_addr, questions_redacted) moved into
           "sealed": {field: hex SHA-256(salt || field || 0x00 || canonical({"v": value}))}

On the wire an event carries three more members: ``key_id`` (inside the view, so it is
signed too), ``seal_salt`` (16 random bytes per event, base64url) and ``signature``
(base64url of the 64 signature bytes). The seals are salted commitments (the idea of
SD-JWT's disclosures): the audit store keeps the view — which proves the event's
origin to anyone holding the public key — without keeping the raw client address or
the redacted question, and with the salt discarded the seals reveal nothing of them.

Verification parses the value as plain JSON (members this version does not know are
signed and kept, so a newer gateway's events verify), recomputes the view and checks
the signature with the key named by ``key_id`` in the :class:`KeySet` (a JWKS-like
document: ``{"keys": [{"kid", "kty": "OKP", "crv": "Ed25519", "x", "not_after"?}]}``).
A key with ``not_after`` verifies only events whose signed ``ts`` is not later; removing
a key from the set makes the events it signed fail with a reason naming it. Each
failure is a :class:`Rejection` with a stable ``reason`` (``unsigned``, ``unknown_key``,
``bad_signature``, ``key_expired``, ``malformed``) for metrics and the dead-letter topic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ragward.errors import ConfigError
from telemetry.audit_chain import canonical_json
from telemetry.audit_record import parse_ts_us

PRIVATE_FIELDS = ("client_addr", "questions_redacted")
SALT_BYTES = 16
Reason = Literal["unsigned", "unknown_key", "bad_signature", "key_expired", "malformed"]

_encoder = msgspec.json.Encoder()
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """base64url without padding; a ValueError (binascii.Error, UnicodeEncodeError) when
    it is not. (``base64.urlsafe_b64decode`` converts its input twice: this is on every
    verified event's path, twice.)"""
    padded = (text + "=" * (-len(text) % 4)).encode("ascii")
    return binascii.a2b_base64(padded.translate(_FROM_URLSAFE))


def seal(field: str, value: Any, salt: bytes) -> str:
    """The salted commitment to one private field's value (hex SHA-256)."""
    data = salt + field.encode() + b"\x00" + canonical_json({"v": value})
    return hashlib.sha256(data).hexdigest()


def signed_view(event: Mapping[str, Any], salt: bytes) -> dict[str, Any]:
    """The object whose canonical JSON is signed (module docstring)."""
    view = dict(event)
    view.pop("signature", None)
    view.pop("seal_salt", None)
    sealed = {f: seal(f, view.pop(f), salt) for f in PRIVATE_FIELDS if f in view}
    if sealed:
        view["sealed"] = sealed
    return view


def thumbprint(public: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint: the default key id."""
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw(public))}
    return b64url(hashlib.sha256(canonical_json(jwk)).digest())


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_jwk(kid: str, public: Ed25519PublicKey, not_after: str | None = None) -> dict[str, Any]:
    jwk: dict[str, Any] = {"kid": kid, "kty": "OKP", "crv": "Ed25519", "x": b64url(_raw(public))}
    if not_after is not None:
        jwk["not_after"] = not_after
    return jwk


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class EventSigner:
    """Signs events with one private key under one key id (one per gateway instance)."""

    def __init__(self, key: Ed25519PrivateKey, key_id: str | None = None) -> None:
        self._key = key
        self.key_id = key_id or thumbprint(key.public_key())

    @classmethod
    def from_pem(cls, pem: bytes, key_id: str | None, source: str) -> EventSigner:
        """Load a PKCS#8 PEM Ed25519 key; ``source`` names the setting in errors."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ConfigError(f"{source} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{source} is not an Ed25519 key (`ragward keys generate`)")
        return cls(key, key_id)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, event: msgspec.Struct | Mapping[str, Any]) -> bytes:
        """The event's wire bytes, with ``key_id``, ``seal_salt`` and ``signature``."""
        data: dict[str, Any] = msgspec.to_builtins(event)
        data["key_id"] = self.key_id
        salt = os.urandom(SALT_BYTES)
        signature = self._key.sign(canonical_json(signed_view(data, salt)))
        data["seal_salt"] = b64url(salt)
        data["signature"] = b64url(signature)
        return _encoder.encode(data)


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: str
    key: Ed25519PublicKey
    not_after_us: int | None = None
    not_after: str | None = None


class KeySet:
    """The public keys verifiers accept, by key id (a JWKS-like document)."""

    def __init__(self, keys: Iterable[PublicKey] = ()) -> None:
        self.keys = {k.kid: k for k in keys}

    @classmethod
    def from_document(cls, document: Any, source: str) -> KeySet:
        """Parse ``{"keys": [...]}``; any fault is a ConfigError naming ``source``."""
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f'{source}: a key set is a JSON object {{"keys": [...]}}')
        keys = []
        for i, entry in enumerate(entries):
            where = f"{source}: keys[{i}]"
            if not isinstance(entry, dict) or entry.get("kty") != "OKP" or \
                    entry.get("crv") != "Ed25519":
                raise ConfigError(f'{where} is not an Ed25519 key (kty "OKP", crv "Ed25519")')
            kid, x, not_after = entry.get("kid"), entry.get("x"), entry.get("not_after")
            if not isinstance(kid, str) or not kid or not isinstance(x, str):
                raise ConfigError(f"{where} needs a kid and x")
            try:
                public = Ed25519PublicKey.from_public_bytes(unb64url(x))
            except ValueError:
                raise ConfigError(f"{where} ({kid}): x is not a 32-byte base64url key") from None
            until = None
            if not_after is not None:
                until = parse_ts_us(not_after) if isinstance(not_after, str) else None
                if until is None:
                    raise ConfigError(f"{where} ({kid}): not_after is not an RFC 3339 time")
            keys.append(PublicKey(kid, public, until, not_after))
        return cls(keys)

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> KeySet:
        try:
            document = msgspec.json.decode(data)
        except msgspec.DecodeError:
            raise ConfigError(f"{source}: the key set is not JSON") from None
        return cls.from_document(document, source)

    def document(self) -> dict[str, Any]:
        return {"keys": [public_jwk(k.kid, k.key, k.not_after) for k in self.keys.values()]}

    def __contains__(self, kid: object) -> bool:
        return kid in self.keys


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event is not trusted: a stable ``reason`` and a one-line ``detail``."""

    reason: Reason
    detail: str
    key_id: str | None = None

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class SignedParts:
    """What the audit store keeps of a signed event: the key id, the signature and the
    exact bytes it covers (the canonical view)."""

    key_id: str
    signature: str
    view: bytes
    ts: str | None  # the signed ts, which a key's not_after is compared with

    @property
    def ts_us(self) -> int | None:
        return parse_ts_us(self.ts) if self.ts is not None else None


def signed_parts(value: bytes) -> SignedParts | Rejection:
    """Split a wire event into its signed parts (no key needed), or say why it cannot be."""
    try:
        data = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return Rejection("malformed", "not JSON")
    if not isinstance(data, dict):
        return Rejection("malformed", "not a JSON object")
    signature, key_id, salt = data.get("signature"), data.get("key_id"), data.get("seal_salt")
    if signature is None and key_id is None:
        return Rejection("unsigned", "the event has no signature")
    if "sealed" in data:  # only views have it: an event carrying one was not made by a gateway
        return Rejection("malformed", 'an event never carries "sealed"',
                         key_id if isinstance(key_id, str) else None)
    if not (isinstance(signature, str) and isinstance(key_id, str) and isinstance(salt, str)):
        return Rejection("malformed", "signature, key_id and seal_salt must be strings",
                         key_id if isinstance(key_id, str) else None)
    try:
        view = canonical_json(signed_view(data, unb64url(salt)))
    except (ValueError, TypeError):
        return Rejection("malformed", "the signed view cannot be computed", key_id)
    ts = data.get("ts")
    return SignedParts(key_id, signature, view, ts if isinstance(ts, str) else None)


def check_signature(keys: KeySet, key_id: str, signature: str, view: bytes,
                    ts_us: int | Callable[[], int | None] | None) -> Rejection | None:
    """None when ``signature`` over ``view`` is good under ``key_id`` at time ``ts_us``
    (or what a callable gives: asked only of a key with a ``not_after``)."""
    key = keys.keys.get(key_id)
    if key is None:
        return Rejection("unknown_key", f"key {key_id!r} is not in the key set", key_id)
    try:
        key.key.verify(unb64url(signature), view)
    except (InvalidSignature, ValueError):
        return Rejection("bad_signature", f"signature does not match under key {key_id!r}",
                         key_id)
    if key.not_after_us is not None:
        at = ts_us() if callable(ts_us) else ts_us
        if at is None or at > key.not_after_us:
            return Rejection("key_expired",
                             f"key {key_id!r} signs only events up to {key.not_after}", key_id)
    return None


class EventVerifier:
    """Checks wire events against a :class:`KeySet`.

    :meth:`verify` is what consumers await; a subclass may fetch its key set again
    first (:class:`telemetry.event_keys.RefreshingVerifier`). :meth:`check` is the same
    check with the keys in hand.

    The event is decoded here as plain JSON, and the consumer decodes it again as its
    type: measured (``bench/events.py``), the second decode costs ~1 µs, converting the
    decoded object to the type instead ~7 µs, and the Ed25519 check ~140 µs.
    """

    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    def check(self, value: bytes) -> Rejection | None:
        """None when the event is signed by a key of the set; else why not."""
        parts = signed_parts(value)
        if isinstance(parts, Rejection):
            return parts
        return check_signature(self.keys, parts.key_id, parts.signature, parts.view,
                               lambda: parts.ts_us)

    async def verify(self, value: bytes) -> Rejection | None:
        return self.check(value)
