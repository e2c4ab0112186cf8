"""Where the event keys come from: settings, or the embedded default's dev pair.

* The gateway's private key: ``RAGWARD_EVENT_SIGNING_KEY`` (PEM text, a secret) or
  ``RAGWARD_EVENT_SIGNING_KEY_FILE``; its key id ``RAGWARD_EVENT_SIGNING_KEY_ID``
  (default: the key's RFC 7638 thumbprint).
* The verifiers' key set: ``RAGWARD_EVENT_KEYS``, a file, an ``https://`` URL or the
  JSON itself, of a JWKS-like document (:class:`telemetry.signing.KeySet`). An event
  naming a key the set lacks makes the verifier load the set again — at most every
  30 s (:class:`ragward.refresh_gate.RefreshGate`, as the gateway's JWKS cache), and
  a URL asynchronously with a 5 s timeout, never blocking the consumer's event loop —
  so a key added for a rotation is picked up without a restart; a set older than
  5 minutes is loaded again too, so a key removed from it stops verifying.

With nothing configured, a process whose events never leave it (no
``RAGWARD_KAFKA_BOOTSTRAP``), and ``ragward serve`` always, use a dev pair kept in
``RAGWARD_DATA_DIR/keys/`` (made on first start, the private key mode 0600); every
other process on Kafka refuses to start, naming the setting. Each process logs
one line saying which keys are in effect.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragward.errors import ConfigError
from ragward.refresh_gate import RefreshGate
from ragward.settings import Settings, env_name
from telemetry.signing import EventSigner, EventVerifier, KeySet, Rejection, private_pem, public_jwk

log = structlog.get_logger(__name__)

DEV_KEY = "event-signing.pem"
DEV_KEY_SET = "event-keys.json"
RELOAD_INTERVAL_S = 30.0  # at most one fetch of the key set per this, on unknown key ids
MAX_AGE_S = 300.0  # a key set older than this is fetched again (a removed key stops)
FETCH_TIMEOUT_S = 5.0


def dev_key_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def write_pair(directory: Path, key: Ed25519PrivateKey, kid: str, key_set: Path) -> Path:
    """Write ``kid``'s private key (0600) into ``directory`` and add its public key to
    ``key_set`` (created if missing); return the private key's path."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    private = directory / f"{kid}.pem"
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem(key))
    document = (KeySet.from_bytes(key_set.read_bytes(), str(key_set)).document()
                if key_set.exists() else {"keys": []})
    if any(k["kid"] == kid for k in document["keys"]):
        raise ConfigError(f"{key_set} already has a key {kid!r}")
    document["keys"].append(public_jwk(kid, key.public_key()))
    key_set.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return private


def new_key_env(directory: Path, kid: str) -> dict[str, str]:
    """Make a pair in ``directory``; the environment that gives a gateway its private key
    and a verifier the key set (test sessions and benchmarks use it)."""
    key_set = directory / DEV_KEY_SET
    private = write_pair(directory, Ed25519PrivateKey.generate(), kid, key_set)
    return {env_name("event_signing_key_file"): str(private),
            env_name("event_signing_key_id"): kid, env_name("event_keys"): str(key_set)}


def _dev_pair(settings: Settings) -> tuple[Path, Path]:
    """The dev pair's private key and key set, made on first use."""
    directory = dev_key_dir(settings)
    private, key_set = directory / DEV_KEY, directory / DEV_KEY_SET
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        signer = EventSigner(key)
        made = write_pair(directory, key, signer.key_id, key_set)
        made.rename(private)
    return private, key_set


def _configured_pem(settings: Settings) -> tuple[bytes, str] | None:
    if settings.event_signing_key is not None:
        return settings.event_signing_key.get_secret_value().encode(), env_name(
            "event_signing_key")
    if settings.event_signing_key_file is not None:
        name = env_name("event_signing_key_file")
        try:
            return settings.event_signing_key_file.read_bytes(), name
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {settings.event_signing_key_file} "
                              f"({exc.strerror})") from None
    return None


def _embedded(settings: Settings) -> bool:
    return not settings.kafka_bootstrap


def signer_from_settings(settings: Settings, *, dev_keys: bool | None = None) -> EventSigner:
    """The gateway's signer; ``dev_keys`` (default: no Kafka) allows the dev pair."""
    configured = _configured_pem(settings)
    if configured is not None:
        pem, source = configured
        signer = EventSigner.from_pem(pem, settings.event_signing_key_id, source)
        log.info("event_signing.key", key_id=signer.key_id, source=source)
        return signer
    if not (_embedded(settings) if dev_keys is None else dev_keys):
        raise ConfigError(
            f"{env_name('event_signing_key')} or {env_name('event_signing_key_file')} must be "
            "set: a gateway on Kafka signs every audit and usage event (`ragward keys generate`)"
        )
    private, _ = _dev_pair(settings)
    signer = EventSigner.from_pem(private.read_bytes(), settings.event_signing_key_id,
                                  str(private))
    log.warning("event_signing.dev_key", key_id=signer.key_id, path=str(private),
                note="development key pair; configure RAGWARD_EVENT_SIGNING_KEY in production")
    return signer


def load_key_set(location: str, source: str) -> KeySet:
    """Read a key set from a file, an http(s) URL, or the JSON document itself (a value
    starting with ``{``: for an environment filled from a ConfigMap or .env). For start-up
    and the CLI, outside an event loop; a running loop awaits :func:`fetch_key_set`."""
    if _is_url(location):
        return asyncio.run(fetch_key_set(location, source))
    return _local_key_set(location, source)


def _is_url(location: str) -> bool:
    return location.startswith(("https://", "http://"))


def _local_key_set(location: str, source: str) -> KeySet:
    if location.lstrip().startswith("{"):
        return KeySet.from_bytes(location.encode(), source)
    try:
        data = Path(location).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read {location} ({exc.strerror})") from None
    return KeySet.from_bytes(data, source)


async def fetch_key_set(location: str, source: str,
                        timeout_s: float = FETCH_TIMEOUT_S) -> KeySet:
    """:func:`load_key_set` without blocking the event loop: a URL with aiohttp (no
    redirects, ``timeout_s`` in all), a file or inline document as it is."""
    if not _is_url(location):
        return _local_key_set(location, source)
    # A session per fetch: fetches are rare (start-up, then at most one per refresh
    # interval), and the verifier, shared by the consumers of `serve`, has no lifespan
    # of its own to close a long-lived one in.
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) \
                as session, session.get(location, allow_redirects=False) as response:
            response.raise_for_status()
            data = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(f"{source}: cannot fetch the key set ({type(exc).__name__})") \
            from None
    return KeySet.from_bytes(data, source)


class RefreshingVerifier(EventVerifier):
    """An :class:`EventVerifier` that, awaited (:meth:`verify`), fetches its key set again
    when an event names a key it lacks or the set is older than ``max_age_s`` — through
    a :class:`~ragward.refresh_gate.RefreshGate`, so at most one fetch runs and none
    sooner than ``min_interval_s`` after the last — so rotations need no restart.

    ``keys`` is the set loaded at start-up; None (a verifier made inside a running event
    loop, which must not block on a URL) fetches it at the first event."""

    def __init__(self, fetch: Callable[[], Awaitable[KeySet]], keys: KeySet | None, *,
                 min_interval_s: float = RELOAD_INTERVAL_S, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(keys if keys is not None else KeySet())
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._gate = RefreshGate(min_interval_s, clock)
        if keys is not None:
            self._gate.started_at = clock()  # the start-up load counts as the first fetch

    async def verify(self, value: bytes) -> Rejection | None:
        if self._gate.age() > self._max_age_s:
            await self._gate.refresh(self._reload)
        rejection = self.check(value)
        if rejection is None or rejection.reason != "unknown_key":
            return rejection
        held = self.keys
        await self._gate.refresh(self._reload)
        return rejection if self.keys is held else self.check(value)

    async def _reload(self) -> None:
        try:
            keys = await self._fetch()
        except ConfigError as exc:
            log.error("event_keys.reload_failed", error=str(exc))
            return
        self.keys = keys
        log.info("event_keys.reloaded", keys=sorted(self.keys.keys))


def key_set_location(settings: Settings, *, dev_keys: bool | None = None) -> tuple[str, str]:
    """(location, what names it in errors) of the key set verifiers read."""
    if settings.event_keys:
        return settings.event_keys, env_name("event_keys")
    if not (_embedded(settings) if dev_keys is None else dev_keys):
        raise ConfigError(
            f"{env_name('event_keys')} must name the public key set (a file or URL): "
            "consumers on Kafka verify every audit and usage event"
        )
    _, key_set = _dev_pair(settings)
    return str(key_set), str(key_set)


def verifier_from_settings(settings: Settings, *, dev_keys: bool | None = None) -> EventVerifier:
    """The consumers' verifier; ``dev_keys`` as for :func:`signer_from_settings`."""
    location, source = key_set_location(settings, dev_keys=dev_keys)
    return key_set_verifier(location, source)


def key_set_verifier(location: str, source: str, *, fetch_timeout_s: float = FETCH_TIMEOUT_S,
                     **kwargs: Any) -> RefreshingVerifier:
    """A :class:`RefreshingVerifier` of the key set at ``location``, loaded now unless a
    URL is to be fetched inside a running event loop (then at the first event);
    ``kwargs`` as the verifier's."""
    keys = None
    if not (_is_url(location) and _loop_running()):
        keys = load_key_set(location, source)
        log.info("event_signing.verifying", keys=sorted(keys.keys), source=source)
    return RefreshingVerifier(lambda: fetch_key_set(location, source, fetch_timeout_s), keys,
                              **kwargs)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def key_set_from_settings(settings: Settings) -> KeySet:
    """The key set once, for the CLI (``audit verify``/``export``): the configured one, else
    the dev pair's that ``ragward serve`` left in the data dir."""
    if not settings.event_keys:
        dev = dev_key_dir(settings) / DEV_KEY_SET
        if dev.exists():
            return load_key_set(str(dev), str(dev))
    return load_key_set(*key_set_location(settings, dev_keys=False))
