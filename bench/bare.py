"""The stack's ceiling for ``bench/gateway.py``: a bare Litestar forwarder.

One handler on uvicorn (uvloop, httptools, one worker) that only verifies an
HS256 JWT with pyjwt, decodes the body with msgspec, runs two regexes over the
question and forwards it to the upstream with one shared
``aiohttp.ClientSession`` — what docs/performance.md calls "the stack's own
ceiling". The gateway's quota, cache, redaction of answers, audit events,
metrics and logs are paid out of the gap between this and the goal.

    RAGWARD_JWT_SECRET=... python -m bench.bare --port 9001 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import jwt
import msgspec
from litestar import Litestar, Request, Response, post

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
DIGITS = re.compile(r"\b(?:\d[ -]?){13,19}\b")


class Query(msgspec.Struct):
    question: str
    top_k: int = 3
    index: str = "default"


def build(upstream: str, secret: str) -> Litestar:
    decoder = msgspec.json.Decoder(Query)
    encoder = msgspec.json.Encoder()
    target = upstream.rstrip("/") + "/v1/query"
    state: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))
        state["session"] = session
        try:
            yield
        finally:
            await session.close()

    @post("/v1/query")
    async def query(request: Request[Any, Any, Any]) -> Response[bytes]:
        header = request.headers.get("authorization", "")
        try:
            jwt.decode(header.removeprefix("Bearer "), secret, algorithms=["HS256"],
                       options={"require": ["exp"]})
        except jwt.PyJWTError:
            return Response(b'{"error":"invalid_token"}', status_code=401,
                            media_type="application/json")
        body = decoder.decode(await request.body())
        question = DIGITS.sub("<NUMBER>", EMAIL.sub("<EMAIL>", body.question))
        payload = encoder.encode(Query(question, body.top_k, body.index))
        async with state["session"].post(
            target, data=payload, headers={"Content-Type": "application/json"}
        ) as response:
            answer = await response.read()
            return Response(answer, status_code=response.status, media_type="application/json")

    return Litestar(route_handlers=[query], lifespan=[lifespan], debug=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="port to listen on (required)")
    parser.add_argument("--upstream", help="base URL of the upstream (required)")
    args = parser.parse_args(argv)
    if args.port is None or args.upstream is None:
        # `make bench` runs every bench/*.py: without arguments this is only a helper.
        print("bench/bare.py is a helper of bench/gateway.py (run with --port and --upstream)")
        return 0
    import uvicorn

    secret = os.environ["RAGWARD_JWT_SECRET"]
    uvicorn.run(build(args.upstream, secret), host="127.0.0.1", port=args.port,
                log_config=None, access_log=False, loop="uvloop", http="httptools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
