"""A real HTTP server speaking rag_core's API, with knobs for failure and latency.

Used by gateway tests (to see exactly what reached "rag_core") and by
``bench/gateway.py`` (a fixed-latency upstream). It is a test double of OUR
internal API, run as a real server on 127.0.0.1 — not a mock of a client.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ragward.devservices import free_port


@dataclass
class UpstreamBehaviour:
    latency_s: float = 0.0
    status: int = 200
    index_version: str = "v1"
    answer_suffix: str = ""
    source_text: str = "Employees get 15 days of annual leave."
    source_metadata: dict[str, Any] = field(default_factory=lambda: {"file_name": "leave.md"})
    prompt_tokens: int = 40
    completion_tokens: int = 10


@dataclass
class UpstreamServer:
    behaviour: UpstreamBehaviour = field(default_factory=UpstreamBehaviour)
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answer(self, question: str) -> dict[str, Any]:
        b = self.behaviour
        return {
            "answer": f"answer to: {question}{b.answer_suffix}",
            "sources": [{"id": "doc-1#0", "text": b.source_text, "score": 0.9,
                         "metadata": b.source_metadata}],
            "usage": {"prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens,
                      "embedding_tokens": 5,
                      "total_tokens": b.prompt_tokens + b.completion_tokens + 5,
                      "cost_usd": 0.0001},
            "cached": False,
            "request_id": "",
        }

    async def _respond(self, request: web.Request, batch: bool) -> web.Response:
        body = await request.json()
        self.received.append(body)
        self.headers.append(dict(request.headers))
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)
        if self.behaviour.status != 200:
            return web.json_response({"error": {"code": "boom", "message": "failed",
                                                "request_id": ""}},
                                     status=self.behaviour.status)
        if batch:
            payload: dict[str, Any] = {"results": [self._answer(q) for q in body["questions"]]}
        else:
            payload = self._answer(body["question"])
        return web.Response(body=json.dumps(payload), content_type="application/json",
                            headers={"X-Index-Version": self.behaviour.index_version})

    async def _query(self, request: web.Request) -> web.Response:
        return await self._respond(request, batch=False)

    async def _batch(self, request: web.Request) -> web.Response:
        return await self._respond(request, batch=True)

    async def _indexes(self, _: web.Request) -> web.Response:
        return web.json_response({"indexes": [
            {"name": "default", "version": self.behaviour.index_version, "documents": 1,
             "chunks": 1, "model": "stub"}]})

    async def _ready(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def start(self, port: int | None = None) -> None:
        app = web.Application()
        app.add_routes([
            web.post("/v1/query", self._query),
            web.post("/v1/query/batch", self._batch),
            web.get("/v1/indexes", self._indexes),
            web.get("/ready", self._ready),
            web.get("/health", self._ready),
        ])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = port or self.port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
