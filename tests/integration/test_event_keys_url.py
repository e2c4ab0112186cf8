"""The verifiers' key set served over HTTP (``RAGWARD_EVENT_KEYS=http(s)://…``), against a
real local HTTP server: a rotation published at the URL is picked up without a restart,
unknown key ids do not hammer the server, and a fetch never blocks the event loop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragward.errors import ConfigError
from ragward.settings import load_settings
from telemetry.event_keys import key_set_verifier, load_key_set, verifier_from_settings
from telemetry.events import AuditEvent, new_event_id, now_rfc3339
from telemetry.signing import EventSigner, public_jwk
from tests.loop_turns import loop_turns


class KeyServer:
    """A key set document at http://127.0.0.1:PORT/keys.json: replaceable, GETs counted,
    answers optionally delayed."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.gets = 0
        self.delay_s = 0.0
        server = self
        self.release = threading.Event()  # set: delayed answers go out at once

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the stdlib's hook name
                server.gets += 1
                if server.delay_s:
                    server.release.wait(server.delay_s)
                body = json.dumps(server.document).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout test makes it)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/keys.json"

    def publish(self, *signers: EventSigner) -> None:
        self.document = {"keys": [public_jwk(s.key_id, s.public_key) for s in signers]}


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)


def _signer(kid: str) -> EventSigner:
    return EventSigner(Ed25519PrivateKey.generate(), kid)


def _event() -> AuditEvent:
    return AuditEvent(event_id=new_event_id(), request_id="r", ts=now_rfc3339(), tenant="acme")


def test_a_url_key_set_loads_at_start_up_outside_the_loop(key_server: KeyServer) -> None:
    """`RAGWARD_EVENT_KEYS=http://…`, built at start-up (no running loop): the set is fetched
    once then and events its key signed verify; an unreachable URL stops start-up naming
    the setting."""
    old = _signer("gw-old")
    key_server.publish(old)
    verifier = verifier_from_settings(load_settings(event_keys=key_server.url))
    assert key_server.gets == 1 and "gw-old" in verifier.keys
    assert verifier.check(old.sign(_event())) is None
    with pytest.raises(ConfigError, match=r"^RAGWARD_EVENT_KEYS: cannot fetch the key set"):
        load_key_set("http://127.0.0.1:9/keys.json", "RAGWARD_EVENT_KEYS")


async def test_a_rotation_published_at_the_url_verifies_after_one_rate_limited_fetch(
    key_server: KeyServer,
) -> None:
    """The set is rotated at the URL mid-run: an event signed by the new key verifies once
    the verifier fetches again (not sooner than the interval after the last fetch), old
    events still verify, and a flood of unknown key ids inside the interval costs no
    request at all; after the interval, one."""
    old, new = _signer("gw-old"), _signer("gw-new")
    key_server.publish(old)
    now = [0.0]
    verifier = key_set_verifier(key_server.url, "RAGWARD_EVENT_KEYS", min_interval_s=30.0,
                                clock=lambda: now[0])
    assert key_server.gets == 0  # inside a running loop: fetched at the first event, awaited
    assert await verifier.verify(old.sign(_event())) is None
    assert key_server.gets == 1

    key_server.publish(old, new)  # the rotation: the new key published beside the old
    rotated = new.sign(_event())
    now[0] = 10.0  # too soon after the last fetch: refused, and no request
    assert (await verifier.verify(rotated)).reason == "unknown_key"  # type: ignore[union-attr]
    assert key_server.gets == 1
    now[0] = 31.0
    assert await verifier.verify(rotated) is None
    assert await verifier.verify(old.sign(_event())) is None
    assert key_server.gets == 2

    forged = [_signer(f"made-up-{i}").sign(_event()) for i in range(200)]
    for i, value in enumerate(forged):
        now[0] = 31.0 + i * 0.1  # 20 s of made-up key ids
        assert (await verifier.verify(value)).reason == "unknown_key"  # type: ignore[union-attr]
    assert key_server.gets == 2
    now[0] = 62.0
    assert (await verifier.verify(forged[0])).reason == "unknown_key"  # type: ignore[union-attr]
    assert key_server.gets == 3


async def test_a_fetch_never_blocks_the_event_loop_and_is_bounded_by_its_timeout(
    key_server: KeyServer,
) -> None:
    """While the key server takes its time, other tasks keep running (a blocking GET would
    freeze them), and a server slower than the fetch timeout makes the event count as
    unknown after the timeout instead of hanging the consumer."""
    new = _signer("gw-new")
    key_server.publish(new)
    key_server.delay_s = 0.6
    verifier = key_set_verifier(key_server.url, "RAGWARD_EVENT_KEYS", min_interval_s=0.0)
    try:
        async with loop_turns(0.01) as turns:
            assert await verifier.verify(new.sign(_event())) is None  # waited 0.6 s for the set
        assert turns.count >= 20, turns.count
        slow = key_set_verifier(key_server.url, "RAGWARD_EVENT_KEYS", min_interval_s=0.0,
                                fetch_timeout_s=0.2)
        key_server.delay_s = 10.0
        started = time.monotonic()
        rejection = await slow.verify(new.sign(_event()))
        assert rejection is not None and rejection.reason == "unknown_key"
        assert time.monotonic() - started < 2.0
    finally:
        key_server.release.set()
