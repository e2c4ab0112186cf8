"""Real local receivers for notification tests: an HTTP server and an SMTP server.

* :class:`HttpReceiver` — an aiohttp server on a free 127.0.0.1 port that records
  every request (path, headers, body, arrival time) and answers 200, or what a
  test scripted per path (e.g. ``429`` with ``Retry-After: 1`` once, then 200).
  Serves as Slack incoming webhook and as generic webhook receiver.
* :class:`SmtpReceiver` — aiosmtpd's ``Controller`` on a free port (its own
  thread), recording every message parsed as :class:`email.message.EmailMessage`;
  optional AUTH (records the credentials used) and STARTTLS with a self-signed
  certificate whose ``client_context()`` trusts it.

Fixtures ``http_receiver`` and ``smtp_receiver`` start one per test; import them
into a test module (``from tests.receivers import http_receiver  # noqa: F401``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """Event-loop time of arrival (``loop.time()``)."""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


class HttpReceiver:
    """A real HTTP server that records requests and answers scripted replies."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()
        self.port = 0

    async def start(self) -> HttpReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies`` in order, then 200."""
        self._scripts.setdefault(path, deque()).extend(replies)

    def at(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def bodies(self, path: str) -> list[Any]:
        return [r.json() for r in self.at(path)]

    async def wait_for(self, path: str, count: int,
                       timeout_s: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``path`` has received at least ``count`` requests."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.at(path)) >= count), timeout_s
            )
        return self.at(path)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(RecordedRequest(
            request.method, request.path, dict(request.headers), body,
            asyncio.get_running_loop().time(),
        ))
        async with self._arrived:
            self._arrived.notify_all()
        script = self._scripts.get(request.path)
        reply = script.popleft() if script else Reply()
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmtpReceiver:
    """aiosmtpd on a free port, recording messages (and AUTH logins)."""

    credentials: tuple[str, str] | None = None
    starttls: bool = False
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0
    _controller: Controller | None = None
    _cert_pem: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SmtpReceiver:
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if self.starttls:
            kwargs["tls_context"] = self._server_context()
            kwargs["require_starttls"] = True
        if self.credentials is not None:
            # AUTH is offered; clients with credentials log in. Requiring it without TLS
            # makes aiosmtpd warn, so it is required only together with STARTTLS.
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = self.starttls
            kwargs["auth_require_tls"] = self.starttls
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"smtp://{auth}127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this server's self-signed certificate."""
        return ssl.create_default_context(cadata=self._cert_pem.decode())

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[EmailMessage]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.count() < count:
            if loop.time() > deadline:
                raise TimeoutError(f"{self.count()} messages, expected {count}")
            await asyncio.sleep(0.02)
        with self._lock:
            return list(self.messages)

    # aiosmtpd handler hook
    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def _authenticate(self, server: Any, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (auth_data.login.decode(), auth_data.password.decode())
        with self._lock:
            self.logins.append(login)
        return AuthResult(success=login == self.credentials, handled=False)

    def _server_context(self) -> ssl.SSLContext:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert_file.write_bytes(self._cert_pem)
            key_file.write_bytes(key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context


@pytest.fixture
async def http_receiver() -> AsyncIterator[HttpReceiver]:
    """A real HTTP server recording requests (Slack and webhook receiver)."""
    receiver = await HttpReceiver().start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    """A real SMTP server (aiosmtpd) recording messages, no AUTH, no TLS."""
    receiver = SmtpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
