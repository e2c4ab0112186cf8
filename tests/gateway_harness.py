"""Run a real gateway app in the test's event loop, in front of a real upstream server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import uvicorn
from litestar import Litestar

from gateway.app import create_app
from ragward.devservices import free_port
from ragward.settings import Settings, load_settings
from telemetry.events import AuditEvent, UsageEvent, any_decoder
from telemetry.memory_bus import MemoryBus
from tests.conftest import TEST_SECRET


def make_token(
    sub: str = "alice",
    tenant: str = "acme",
    roles: list[str] | None = None,
    secret: str = TEST_SECRET,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "tenant": tenant,
                               "roles": roles if roles is not None else ["reader"],
                               "iat": now, "exp": now + 600}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret,
                      algorithm="HS256")


def bearer(**kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(**kwargs)}"}


def gateway_settings(tmp_path: Any, upstream_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "jwt_secret": TEST_SECRET,
                              "rag_core_url": upstream_url, "upstream_retries": 1,
                              "circuit_reset_s": 0.5}
    values.update(overrides)
    return load_settings(**values)


@dataclass
class RunningGateway:
    client: httpx.AsyncClient
    app: Litestar
    bus: MemoryBus
    settings: Settings

    def audit_events(self) -> list[AuditEvent]:
        decoded = [any_decoder.decode(r.value) for r in self.bus.records(self.settings.topic_audit)]
        # partitions interleave: put events back in the order the requests happened
        return sorted((e for e in decoded if isinstance(e, AuditEvent)), key=lambda e: e.ts)

    def usage_events(self) -> list[UsageEvent]:
        decoded = [any_decoder.decode(r.value) for r in self.bus.records(self.settings.topic_usage)]
        return sorted((e for e in decoded if isinstance(e, UsageEvent)), key=lambda e: e.ts)


@asynccontextmanager
async def serving(
    app: Any, port: int | None = None, *, sock: socket.socket | None = None
) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on this test's event loop; yields its base URL.
    ``sock``: a listening socket of the test's own making (another address family)."""
    port = sock.getsockname()[1] if sock is not None else port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped during start-up")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def running_gateway(
    settings: Settings, *, sock: socket.socket | None = None, **given: Any
) -> AsyncIterator[RunningGateway]:
    """A real gateway over HTTP on the test's loop, publishing into an in-process bus."""
    bus = given.pop("bus", None) or MemoryBus()
    publisher = bus.publisher()
    await publisher.start()
    try:
        app = create_app(settings, publisher=publisher, **given)
        async with serving(app, sock=sock) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield RunningGateway(client, app, bus, settings)
    finally:
        await publisher.stop()
