"""What identifies a question without revealing it: the normalised form and a keyed hash.

The cache keys on the normalised *redacted* question; the audit event carries
``question_hmac``: HMAC-SHA256 under ``RAGWARD_AUDIT_HASH_KEY`` of that same
normalised redacted text. Keyed, so whoever reads the audit log cannot confirm a
guessed question (or the PII in it) by hashing it; redacted, so the hash is of
what the gateway forwarded, never of raw PII. The same key on every gateway makes
equal questions match across replicas and restarts. Without a key configured the
key is derived (HKDF-SHA256, its own label) from the shared HS256 JWT secret, which
every replica already holds; only when neither is set (JWKS only) does each
process draw a random key, and say so once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ragward.settings import Settings, env_name

log = structlog.get_logger(__name__)


def normalise_question(question: str) -> str:
    """Case, width and whitespace differences do not change the answer."""
    return " ".join(unicodedata.normalize("NFKC", question).casefold().split())


class QuestionHasher:
    """``question_hmac`` of a redacted question (hex HMAC-SHA256 of its normalised form)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> QuestionHasher:
        if settings.audit_hash_key is not None:
            return cls(settings.audit_hash_key.get_secret_value().encode())
        if settings.jwt_secret is not None:
            derive = HKDF(hashes.SHA256(), 32, salt=None, info=b"ragward question_hmac v1")
            return cls(derive.derive(settings.jwt_secret.get_secret_value().encode()))
        log.warning("audit_hash_key_unset",
                    hint=f"set {env_name('audit_hash_key')} (the same on every gateway) so "
                    "question_hmac matches across replicas and restarts")
        return cls(secrets.token_bytes(32))

    def __call__(self, redacted_question: str) -> str:
        material = normalise_question(redacted_question).encode("utf-8")
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()
