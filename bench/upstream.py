"""A fixed-latency upstream for ``bench/gateway.py``, run as its own process.

It speaks two APIs on one port, so every proxy under test sees the same server:

* rag_core's (docs/api.md, same JSON shapes as ``tests/upstream_server.py``):
  ``POST /v1/query``, ``POST /v1/query/batch`` (with ``X-Index-Version``),
  ``GET /v1/indexes``, ``GET /ready``, ``GET /health``;
* OpenAI's ``POST /v1/chat/completions`` (non-streaming), for LiteLLM's proxy;
* OTLP/HTTP's ``POST /v1/traces``, accepted and dropped (``bench/gateway.py --tracing``).

It is a raw asyncio protocol on uvloop with httptools' parser — no framework —
so that it costs as little CPU as possible on a machine it shares with the
proxy under test and the load generator. Keep-alive is supported; responses
leave in request order. ``--latency-ms`` delays every answer by that much
(``loop.call_later``: no coroutine per request).

    python -m bench.upstream --port 9000 --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

INDEX_VERSION = "v1"
SOURCE_TEXT = "Employees get 15 days of annual leave."


def _rag_answer(question: str) -> dict[str, Any]:
    return {
        "answer": f"answer to: {question}",
        "sources": [{"id": "doc-1#0", "text": SOURCE_TEXT, "score": 0.9,
                     "metadata": {"file_name": "leave.md"}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 10, "embedding_tokens": 5,
                  "total_tokens": 55, "cost_usd": 0.0001},
        "cached": False,
        "request_id": "",
    }


def _chat_answer(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or [{}]
    last = messages[-1].get("content", "") if isinstance(messages[-1], dict) else ""
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "bench-model"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": f"answer to: {last}"}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50},
    }


def _route(method: bytes, path: bytes, body: bytes) -> tuple[int, bytes, list[tuple[str, str]]]:
    """(status, body, extra headers) for one request."""
    path = path.split(b"?", 1)[0]
    extra: list[tuple[str, str]] = []
    try:
        if method == b"POST" and path == b"/v1/query":
            payload: Any = _rag_answer(json.loads(body)["question"])
            extra.append(("X-Index-Version", INDEX_VERSION))
        elif method == b"POST" and path == b"/v1/query/batch":
            payload = {"results": [_rag_answer(q) for q in json.loads(body)["questions"]]}
            extra.append(("X-Index-Version", INDEX_VERSION))
        elif method == b"POST" and path == b"/v1/chat/completions":
            payload = _chat_answer(json.loads(body))
        elif method == b"GET" and path == b"/v1/indexes":
            payload = {"indexes": [{"name": "default", "version": INDEX_VERSION,
                                    "documents": 1, "chunks": 1, "model": "stub"}]}
        elif method == b"GET" and path in (b"/ready", b"/health"):
            payload = {"status": "ok"}
        elif method == b"POST" and path == b"/v1/traces":  # OTLP/HTTP: bench --tracing
            payload = {}
        elif method == b"GET" and path == b"/v1/models":
            payload = {"object": "list", "data": [{"id": "bench-model", "object": "model"}]}
        else:
            return 404, b'{"error":{"code":"not_found","message":"no such route"}}', extra
    except (ValueError, KeyError, TypeError):
        return 400, b'{"error":{"code":"bad_request","message":"bad body"}}', extra
    return 200, json.dumps(payload).encode(), extra


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


class _Connection(asyncio.Protocol):
    def __init__(self, latency_s: float) -> None:
        import httptools

        self._latency = latency_s
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._keep_alive = True
        self._loop = asyncio.get_running_loop()
        self._pending = 0
        self._closing = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception:  # malformed request: drop the connection
            if self._transport is not None:
                self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        keep_alive = self._parser.should_keep_alive()
        status, body, extra = _route(method, self._url, b"".join(self._body))
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"OK")),
                b"Content-Type: application/json\r\n",
                b"Content-Length: %d\r\n" % len(body)]
        head.extend(f"{k}: {v}\r\n".encode() for k, v in extra)
        if not keep_alive:
            head.append(b"Connection: close\r\n")
        response = b"".join(head) + b"\r\n" + body
        if self._latency > 0:
            self._loop.call_later(self._latency, self._write, response, keep_alive)
        else:
            self._write(response, keep_alive)

    def _write(self, response: bytes, keep_alive: bool) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(response)
        if not keep_alive:
            self._transport.close()


async def serve(port: int, latency_ms: float, host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(latency_ms / 1000.0), host, port,
                                      backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on http://{host}:{port} latency={latency_ms} ms", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="port to listen on (required)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per answer")
    args = parser.parse_args(argv)
    if args.port is None:
        # `make bench` runs every bench/*.py: without --port this is only a helper.
        print("bench/upstream.py is a helper of bench/gateway.py (run with --port PORT)")
        return 0
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port, args.latency_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
