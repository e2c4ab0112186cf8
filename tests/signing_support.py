"""The test session's event keys: one gateway key pair, given to every process through the
environment (``RAGWARD_EVENT_SIGNING_KEY_FILE`` / ``RAGWARD_EVENT_KEYS``), as production
configures it; tests that publish events themselves sign them with :func:`sign`."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import msgspec

from telemetry.event_keys import new_key_env
from telemetry.signing import EventSigner

TEST_KEY_ID = "test-gateway-1"
KEY_FILE_VAR = "RAGWARD_EVENT_SIGNING_KEY_FILE"
KEY_SET_VAR = "RAGWARD_EVENT_KEYS"


def key_env(directory: Path) -> dict[str, str]:
    """The environment that gives a process the session's keys (a fresh pair)."""
    return new_key_env(directory, TEST_KEY_ID)


def session_key_env() -> dict[str, str]:
    """The session's key settings, for a child process started with a clean environment."""
    return {name: os.environ[name] for name in
            (KEY_FILE_VAR, "RAGWARD_EVENT_SIGNING_KEY_ID", KEY_SET_VAR) if name in os.environ}


@functools.cache
def _signer(path: str) -> EventSigner:
    return EventSigner.from_pem(Path(path).read_bytes(), TEST_KEY_ID, path)


def signer() -> EventSigner:
    """The session's gateway signer (the key the environment names)."""
    return _signer(os.environ[KEY_FILE_VAR])


def sign(event: msgspec.Struct) -> bytes:
    """``event``'s wire bytes, signed as the session's gateway signs."""
    return signer().sign(event)
