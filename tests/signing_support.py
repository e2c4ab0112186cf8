"""The test session's event keys: one gateway key pair, given to every process through the
environment (``RAGWARD_EVENT_SIGNING_KEY_FILE`` / ``RAGWARD_EVENT_KEYS``), as production
configures it; tests that publish events themselves sign them with :func:`sign`."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from telemetry.event_keys import write_pair
from telemetry.signing import EventSigner

TEST_KEY_ID = "test-gateway-1"
KEY_FILE_VAR = "RAGWARD_EVENT_SIGNING_KEY_FILE"
KEY_SET_VAR = "RAGWARD_EVENT_KEYS"


def make_keys(directory: Path, kid: str = TEST_KEY_ID) -> tuple[Path, Path]:
    """A fresh pair in ``directory``: (private key file, key set file)."""
    key_set = directory / "event-keys.json"
    return write_pair(directory, Ed25519PrivateKey.generate(), kid, key_set), key_set


def key_env(directory: Path) -> dict[str, str]:
    """The environment that gives a process the session's keys."""
    private, key_set = make_keys(directory)
    return {KEY_FILE_VAR: str(private), "RAGWARD_EVENT_SIGNING_KEY_ID": TEST_KEY_ID,
            KEY_SET_VAR: str(key_set)}


@functools.cache
def _signer(path: str) -> EventSigner:
    return EventSigner.from_pem(Path(path).read_bytes(), TEST_KEY_ID, path)


def signer() -> EventSigner:
    """The session's gateway signer (the key the environment names)."""
    return _signer(os.environ[KEY_FILE_VAR])


def sign(event: msgspec.Struct) -> bytes:
    """``event``'s wire bytes, signed as the session's gateway signs."""
    return signer().sign(event)
