"""A small, real OpenAI-compatible HTTP server for tests (the only fake we allow: the OpenAI API).

It serves ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` on a free
127.0.0.1 port from its own thread and event loop, so both sync clients (ingest)
and async ones (queries) can call it. Every answer carries ``usage``; the counts
are the server's own (words plus a per-message overhead, plus ``extra_tokens``),
deliberately *not* what tiktoken would say, so a test can tell server-reported
numbers from client-side estimates. Embeddings are deterministic hashed
bags of words (``dim`` floats), so retrieval through them is meaningful.

Scripted failures, consumed in order by the next matching requests::

    server.fail_next("429", retry_after=1)     # 429 + Retry-After, once
    server.fail_next("500", times=5)           # five 500s
    server.fail_next("hang")                   # never answers (until stop())

``stream: true`` answers Server-Sent Events the way OpenAI does: a role chunk,
one chunk per word of the answer (``stream_delay_s`` apart), a chunk with
``finish_reason``, then — only with ``stream_options.include_usage`` — a usage
chunk with ``choices: []``, then ``data: [DONE]``. ``answer_text`` replaces the
stub's answer (e.g. one full of PII); ``chunk_chars`` streams it in pieces of that
many characters instead of words; ``chunks`` makes the answer exactly these pieces,
streamed one per chunk (any cutting a test wants); ``max_tokens`` cuts it (``length``). A
client that leaves mid-stream is recorded: ``seen.status == 499`` and
``seen.words_sent`` says how far it got.

Run standalone: ``python -m tests.openai_server --port 8099``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_TOKEN = re.compile(r"[A-Za-z0-9]+|[\u3400-\u9fff]")


def count_tokens(text: str) -> int:
    """The stub's tokenizer: words and single CJK characters."""
    return len(_TOKEN.findall(text))


def embed(text: str, dim: int) -> list[float]:
    vec = [0.0] * dim
    for token in _TOKEN.findall(text.lower()):
        h = zlib.crc32(token.encode())
        vec[h % dim] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


@dataclass
class Failure:
    kind: str  # "429" | "500" | "hang"
    endpoint: str | None = None  # "chat" | "embeddings" | None = any
    retry_after: float | None = None


@dataclass
class Seen:
    endpoint: str
    at: float
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    words_sent: int = 0


class OpenAIStub:
    def __init__(self, *, dim: int = 64, extra_tokens: int = 0, port: int = 0) -> None:
        self.dim = dim
        self.extra_tokens = extra_tokens
        self.stream_delay_s = 0.0
        self.answer_text: str | None = None
        self.chunk_chars = 0  # stream pieces of this many characters instead of words
        self.chunks: list[str] | None = None  # the answer is these pieces, streamed as such
        self.requests: list[Seen] = []
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self._started = threading.Event()
        self.port = 0

    # -- control ---------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(
        self,
        kind: str,
        *,
        times: int = 1,
        endpoint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        with self._lock:
            for _ in range(times):
                self._failures.append(Failure(kind, endpoint, retry_after))

    def seen(self, endpoint: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> OpenAIStub:
        self._thread = threading.Thread(target=self._run, name="openai-stub", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("OpenAI stub did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        future.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._startup())
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        assert self._release is not None and self._runner is not None
        self._release.set()  # let hanging handlers go
        await self._runner.cleanup()

    # -- handlers ----------------------------------------------------------------
    def _take_failure(self, endpoint: str) -> Failure | None:
        with self._lock:
            for failure in list(self._failures):
                if failure.endpoint in (None, endpoint):
                    self._failures.remove(failure)
                    return failure
        return None

    async def _maybe_fail(self, endpoint: str, seen: Seen) -> web.Response | None:
        failure = self._take_failure(endpoint)
        if failure is None:
            return None
        if failure.kind == "hang":
            assert self._release is not None
            await self._release.wait()
            seen.status = 599
            return web.json_response({"error": {"message": "stub stopped"}}, status=503)
        status = int(failure.kind)
        seen.status = status
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
        return web.json_response(
            {"error": {"message": f"stub {status}", "type": "stub_error", "code": None}},
            status=status,
            headers=headers,
        )

    def _record(self, endpoint: str, request: web.Request, body: dict[str, Any]) -> Seen:
        seen = Seen(endpoint, time.monotonic(), dict(request.headers), body)
        with self._lock:
            self.requests.append(seen)
        return seen

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        seen = self._record("chat", request, body)
        failed = await self._maybe_fail("chat", seen)
        if failed is not None:
            return failed
        messages = body.get("messages", [])
        prompt_text = " ".join(str(m.get("content", "")) for m in messages)
        question = prompt_text.rsplit("Question:", 1)[-1].split("Answer:", 1)[0].strip()
        scripted = "".join(self.chunks) if self.chunks else None
        answer = scripted or self.answer_text or f"Stub answer about: {question[:80]}"
        finish = "stop"
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if limit is not None and count_tokens(answer) > limit:
            answer = " ".join(answer.split(" ")[: int(limit)])
            finish = "length"
        if body.get("stream"):
            return await self._stream(request, body, seen, prompt_text, messages, answer, finish)
        usage = {
            "prompt_tokens": count_tokens(prompt_text) + 4 * len(messages) + self.extra_tokens,
            "completion_tokens": count_tokens(answer) + self.extra_tokens,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        seen.status, seen.usage = 200, usage
        return web.json_response(
            {
                "id": f"chatcmpl-stub-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "stub"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], seen: Seen, prompt_text: str,
        messages: list[Any], answer: str, finish: str,
    ) -> web.StreamResponse:
        usage = {
            "prompt_tokens": count_tokens(prompt_text) + 4 * len(messages) + self.extra_tokens,
            "completion_tokens": count_tokens(answer) + self.extra_tokens,
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": f"chatcmpl-stub-{len(self.requests)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model", "stub")}

        async def send(choices: list[Any], **extra: Any) -> None:
            await response.write(
                b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"
            )

        if self.chunks and "".join(self.chunks) == answer:  # (not cut by max_tokens)
            pieces = list(self.chunks)
        elif self.chunk_chars:
            pieces = [answer[i : i + self.chunk_chars]
                      for i in range(0, len(answer), self.chunk_chars)]
        else:
            words = answer.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        try:
            await send([{"index": 0, "delta": {"role": "assistant", "content": ""},
                         "finish_reason": None}])
            for i, text in enumerate(pieces):
                if self.stream_delay_s:
                    await asyncio.sleep(self.stream_delay_s)
                await send([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
                seen.words_sent = i + 1
            await send([{"index": 0, "delta": {}, "finish_reason": finish}])
            if (body.get("stream_options") or {}).get("include_usage"):
                await send([], usage=usage)
            await response.write(b"data: [DONE]\n\n")
        except ConnectionResetError:
            seen.status = 499  # the client (rag_core) went away mid-stream
            return response
        except asyncio.CancelledError:
            seen.status = 499
            raise
        seen.status, seen.usage = 200, usage
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        seen = self._record("embeddings", request, body)
        failed = await self._maybe_fail("embeddings", seen)
        if failed is not None:
            return failed
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        tokens = sum(count_tokens(t) for t in texts) + self.extra_tokens
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        seen.status, seen.usage = 200, usage
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": embed(t, self.dim)}
                    for i, t in enumerate(texts)
                ],
                "model": body.get("model", "stub"),
                "usage": usage,
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible stub for local testing")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--stream-delay-ms", type=float, default=0.0,
                        help="pause before each streamed word")
    parser.add_argument("--answer-words", type=int, default=0,
                        help="answer with this many words instead of the echo")
    args = parser.parse_args()
    stub = OpenAIStub(dim=args.dim, port=args.port)
    stub.stream_delay_s = args.stream_delay_ms / 1000
    if args.answer_words:
        stub.answer_text = " ".join(f"word{i}" for i in range(args.answer_words))
    stub.start()
    print(f"OpenAI stub on {stub.base_url} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
