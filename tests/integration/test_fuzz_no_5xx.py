"""Property-based fuzzing of every route: hostile input is a 4xx, never a 5xx.

Hypothesis builds requests from mutated parts — tokens (signed with the right
secret but with any JSON in any header or claim, unsigned, tampered, garbage),
headers, bodies (well-shaped with hostile fields, arbitrary JSON, raw bytes, deep
nesting) and query strings — and sends them, unauthenticated and authenticated, to
every route the gateway app registers (and to rag_core's), plus unknown paths and
wrong methods. Every answer must be below 500, and every 4xx must carry the
contract's error body ``{"error": {"code", "message", "request_id"}}``.

The gateway runs split mode in front of a real HTTP upstream, with quotas and cache
on the session's real Redis, on its own event loop in a thread (Hypothesis drives
synchronous tests); examples are bounded so each test takes seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from rag_core.app import create_app as create_rag_app
from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.settings import load_settings
from telemetry.audit_store import encode_cursor, open_store, store_reader
from telemetry.configuration import audit_store_config
from tests.conftest import TEST_SECRET
from tests.gateway_harness import gateway_settings, running_gateway
from tests.upstream_server import UpstreamServer

T = TypeVar("T")
FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INTERNAL_TOKEN = "internal-token-fuzz-0123456789abcdef"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


# ----------------------------------------------------------------------------- parts

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
# Text as hostile as a header or a claim gets: controls, separators, surrogate escapes.
nasty_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", " ", "\r\n", "a\r\nX-Injected: 1", "\x00", "\x85", "\u2028", "\u202e",
                     "租户", "../../etc/passwd", "%00", "${jndi:x}", "' OR 1=1 --", "A" * 5000]),
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw_json(value: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return b"{}"


def sign(header: bytes, payload: bytes, secret: str = TEST_SECRET) -> str:
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def valid_claims(tenant: str, roles: list[str]) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "fuzzer", "tenant": tenant, "roles": roles, "iat": now, "exp": now + 3600}


HEADER_KEYS = ("alg", "typ", "kid", "cty", "crit", "b64", "jku", "jwk", "x5c", "zip", "enc")
CLAIM_KEYS = ("sub", "tenant", "roles", "exp", "nbf", "iat", "iss", "aud", "jti", "extra")


@st.composite
def tokens(draw: st.DrawFn, tenant: str) -> str | None:
    """None, garbage, or a JWT whose header and claims Hypothesis mutated — signed with
    the gateway's secret, with a wrong secret, unsigned, or tampered after signing."""
    kind = draw(st.sampled_from(["absent", "garbage", "signed", "wrong_key", "unsigned",
                                 "tampered", "raw_parts"]))
    if kind == "absent":
        return None
    if kind == "garbage":
        return draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                            max_size=300))
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    header.update(draw(st.dictionaries(st.sampled_from(HEADER_KEYS), json_values, max_size=3)))
    claims: dict[str, Any] = valid_claims(tenant, ["admin"])
    claims.update(draw(st.dictionaries(st.sampled_from(CLAIM_KEYS), json_values | nasty_text,
                                       max_size=3)))
    for key in draw(st.lists(st.sampled_from(CLAIM_KEYS), max_size=2)):
        claims.pop(key, None)
    header_raw, claims_raw = _raw_json(header), _raw_json(claims)
    if kind == "raw_parts":  # not JSON objects at all, or surrogate escapes, or deep
        header_raw = draw(st.sampled_from([header_raw, b"[]", b"null", b'"x"', b"{",
                                           b'{"alg":"HS256","x":' + b"[" * 3000 + b"}"]))
        claims_raw = draw(st.sampled_from([claims_raw, b"[1]", b"1e999", b'{"sub":"\\ud800"}',
                                           b'{"sub":' + b"[" * 3000 + b"}", b"\xff\xfe"]))
    if kind == "unsigned":
        return f"{_b64(_raw_json({**header, 'alg': 'none'}))}.{_b64(claims_raw)}."
    token = sign(header_raw, claims_raw,
                 "another-secret-0123456789-0123456789" if kind == "wrong_key" else TEST_SECRET)
    if kind == "tampered":
        flip = draw(st.integers(min_value=0, max_value=len(token) - 1))
        token = token[:flip] + ("A" if token[flip] != "A" else "B") + token[flip + 1:]
    return token


header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
    max_size=120,
)
extra_headers = st.dictionaries(
    st.sampled_from(["X-Request-ID", "Content-Type", "Cache-Control", "X-Tenant", "X-Subject",
                     "User-Agent", "Accept", "X-Internal-Token", "Content-Encoding",
                     "X-Forwarded-For"]),
    header_values | st.sampled_from(["application/json", "text/plain", "application/x-www-"
                                     "form-urlencoded", "multipart/form-data", "no-cache"]),
    max_size=4,
)


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    """No body; the right shape with hostile fields; any JSON; raw bytes; deep nesting."""
    kind = draw(st.sampled_from(["none", "shaped", "batch", "json", "bytes", "deep"]))
    if kind == "none":
        return None
    if kind in ("shaped", "batch"):
        body: dict[str, Any] = (
            {"question": draw(nasty_text | json_values)} if kind == "shaped"
            else {"questions": draw(st.lists(nasty_text, max_size=40) | json_values)}
        )
        body.update(draw(st.dictionaries(
            st.sampled_from(["top_k", "index", "extra", "question"]), json_values | nasty_text,
            max_size=2)))
        return _raw_json(body)
    if kind == "json":
        return _raw_json(draw(json_values))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    return draw(st.sampled_from([
        _deep(100_000), b'{"question":' + _deep(50_000) + b"}", b'{"a":' * 20_000,
        b'{"question": "' + b"\\ud800" + b'"}', b"[" * 33 + b"]" * 33,
    ]))


query_strings = st.dictionaries(
    st.sampled_from(["tenant", "subject", "request_id", "since", "until", "limit", "cursor",
                     "top_k", "index", "x"]),
    nasty_text.filter(lambda s: len(s) < 2000) | st.sampled_from([
        "0", "-1", "1001", "9" * 40, "2026-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
        encode_cursor(2**63, 0, 0), encode_cursor(10**30, -1, 2**70),
        _b64(b"[" * 1000), _b64(b'{"a":1}'), "!!!",
    ]),
    max_size=4,
)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, str]
    body: bytes | None

    def raw_headers(self, **extra: str) -> dict[str, bytes]:
        """Header values as the bytes a client may send: latin-1, not only ASCII, without
        the surrounding whitespace HTTP/1.1 itself strips (h11 refuses to send it)."""
        return {k: v.strip(" \t").encode("latin-1")
                for k, v in {**extra, **self.headers}.items()}


def _routes(app: Litestar) -> list[tuple[str, str]]:
    """(method, path) of every registered route, path parameters filled with junk."""
    found = []
    for route in app.routes:
        path = route.path
        for name in getattr(route, "path_parameters", {}) or {}:
            path = path.replace("{" + name + "}", "x").replace("{" + name + ":str}", "x")
        for method in sorted(getattr(route, "methods", {"GET"})):
            found.append((method, path.split("{")[0] or "/"))
    return found


@st.composite
def cases(draw: st.DrawFn, routes: list[tuple[str, str]], authorization: st.SearchStrategy[
        str | None]) -> Case:
    # Mostly the API routes; the schema documents, HEAD and OPTIONS now and then.
    api = [(m, p) for m, p in routes if not p.startswith("/schema") and m in ("GET", "POST")]
    method, path = draw(st.sampled_from(api) if draw(st.integers(0, 4)) else
                        st.sampled_from(routes))
    if draw(st.integers(0, 9)) == 0:  # a wrong method or an unknown path now and then
        method = draw(st.sampled_from(METHODS))
        path = draw(st.sampled_from([path, path + "/", "/v1/nope", "/",
                                     "/" + quote(draw(st.text(max_size=20)), safe="")]))
    headers = {k: v for k, v in draw(extra_headers).items()}
    token = draw(authorization)
    if token is not None:
        scheme = draw(st.sampled_from(["Bearer ", "Bearer ", "bearer ", "Basic ", "Bearer  ",
                                       ""]))
        headers["Authorization"] = scheme + token
    body = draw(bodies()) if method in ("POST", "PUT", "PATCH") else None
    if body is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    return Case(method, path, headers, draw(query_strings), body)


OPENAI_PATHS = ("/v1/chat/completions", "/v1/models")


def assert_no_5xx_and_contract_errors(case: Case, status: int, content_type: str,
                                      body: bytes, *, openai_surface: bool = True) -> None:
    assert status < 500, (case, status, body[:300])
    if 400 <= status < 500 and case.method != "HEAD":
        assert content_type.startswith("application/json"), (case, status, content_type)
        answer = json.loads(body)
        error = answer["error"]
        # the OpenAI surface answers in OpenAI's shape, so the SDKs raise their classes
        if case.path.startswith(OPENAI_PATHS) and openai_surface:
            assert set(error) == {"message", "type", "param", "code"}, (case, error)
            assert isinstance(error["message"], str) and isinstance(error["type"], str)
            assert isinstance(answer["request_id"], str) and answer["request_id"], (case, answer)
            return
        assert set(error) == {"code", "message", "request_id"}, (case, error)
        assert all(isinstance(error[k], str) for k in error) and error["code"], (case, error)


# ---------------------------------------------------------------- the gateway, in a thread


class LoopThread:
    """An event loop of its own in a daemon thread: Hypothesis tests are synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class FuzzedGateway:
    loop: LoopThread
    client: httpx.AsyncClient
    app: Litestar
    tenant: str

    def send(self, case: Case) -> tuple[int, str, bytes]:
        async def go() -> tuple[int, str, bytes]:
            response = await self.client.request(
                case.method, case.path, headers=case.raw_headers(), params=case.params,
                content=case.body)
            return response.status_code, response.headers.get("content-type", ""), \
                response.content
        return self.loop.run(go())


@pytest.fixture(scope="module")
def fuzzed_gateway(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                   ) -> Iterator[FuzzedGateway]:
    """A split-mode gateway (real upstream over HTTP, quotas and cache on real Redis,
    an audit store to read) that every example of the module hits."""
    loop = LoopThread()
    stack = contextlib.AsyncExitStack()
    tmp = tmp_path_factory.mktemp("fuzz")

    async def start() -> FuzzedGateway:
        upstream = UpstreamServer()
        await upstream.start()
        stack.push_async_callback(upstream.stop)
        config = gateway_settings(tmp, upstream.url, redis_url=redis_url,
                                  quota_rpm=1_000_000_000, quota_tokens_per_day=10**12)
        store = open_store(audit_store_config(config))
        stack.push_async_callback(store.close)
        gw = await stack.enter_async_context(
            running_gateway(config, audit_reader=store_reader(store)))
        return FuzzedGateway(loop, gw.client, gw.app, f"fuzz-{uuid.uuid4().hex[:8]}")

    try:
        yield loop.run(start())
    finally:
        loop.run(stack.aclose())
        loop.close()


def test_fuzzed_unauthenticated_requests_never_get_a_5xx(
    fuzzed_gateway: FuzzedGateway,
) -> None:
    """Mutated, unsigned, tampered and garbage tokens (and none) with hostile headers,
    bodies and query strings on every route: no 5xx; every 4xx in the contract's shape."""
    routes = _routes(fuzzed_gateway.app)
    assert {("POST", "/v1/query"), ("GET", "/v1/audit")} <= set(routes)

    @FUZZ
    @given(case=cases(routes, tokens(fuzzed_gateway.tenant)))
    def check(case: Case) -> None:
        assert_no_5xx_and_contract_errors(case, *fuzzed_gateway.send(case))

    check()


def test_fuzzed_authenticated_requests_never_get_a_5xx(
    fuzzed_gateway: FuzzedGateway,
) -> None:
    """A valid token of each role, with hostile headers, bodies and query strings on
    every route: no 5xx; every 4xx in the contract's shape."""
    routes = _routes(fuzzed_gateway.app)
    valid = st.sampled_from([["admin"], ["reader"], ["batch"], ["compliance"], []]).map(
        lambda roles: sign(_raw_json({"alg": "HS256", "typ": "JWT"}),
                           _raw_json(valid_claims(fuzzed_gateway.tenant, roles))))

    @FUZZ
    @given(case=cases(routes, valid))
    def check(case: Case) -> None:
        assert_no_5xx_and_contract_errors(case, *fuzzed_gateway.send(case))

    check()


# ------------------------------------------------------------------------------- rag_core


@pytest.fixture(scope="module")
def rag_core_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Litestar]]:
    data = tmp_path_factory.mktemp("fuzz-rag")
    ingest(ingest_config(load_settings(data_dir=data)), [], None, sample=True, show_progress=False)
    app = create_rag_app(load_settings(data_dir=data, internal_token=INTERNAL_TOKEN))
    with TestClient(app=app) as client:
        yield client


def test_fuzzed_requests_to_rag_core_never_get_a_5xx(
    rag_core_client: TestClient[Litestar],
) -> None:
    """rag_core's routes with the right, a wrong or no internal token, hostile caller
    headers, bodies and query strings: no 5xx; every 4xx in the contract's shape."""
    routes = _routes(rag_core_client.app)
    assert ("POST", "/v1/query") in routes
    internal = st.sampled_from([INTERNAL_TOKEN, INTERNAL_TOKEN, "wrong", ""])

    @FUZZ
    @given(case=cases(routes, st.none()), token=internal)
    def check(case: Case, token: str) -> None:
        response = rag_core_client.request(case.method, case.path,
                                           headers=case.raw_headers(**{"X-Internal-Token": token}),
                                           params=case.params, content=case.body)
        assert_no_5xx_and_contract_errors(case, response.status_code,
                                          response.headers.get("content-type", ""),
                                          response.content, openai_surface=False)

    check()


def test_the_fuzz_strategies_reach_the_interesting_answers(
    fuzzed_gateway: FuzzedGateway,
) -> None:
    """Guard against a fuzzer that only ever meets one status: across examples it gets
    200s, 400s, 401s, 404s and 422s from the gateway."""
    routes = _routes(fuzzed_gateway.app)
    valid = st.just(sign(_raw_json({"alg": "HS256", "typ": "JWT"}),
                         _raw_json(valid_claims(fuzzed_gateway.tenant, ["admin"]))))
    seen: set[int] = set()

    @settings(max_examples=800, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(routes, st.one_of(valid, valid, valid, tokens(fuzzed_gateway.tenant))))
    def check(case: Case) -> None:
        status, content_type, body = fuzzed_gateway.send(case)
        assert_no_5xx_and_contract_errors(case, status, content_type, body)
        seen.add(status)

    check()
    assert {200, 400, 401, 404, 422} <= seen, seen


@pytest.mark.parametrize("route", ["/v1/query", "/v1/query/batch"])
def test_rag_core_refuses_a_body_nested_100000_deep_with_a_400(
    rag_core_client: TestClient[Litestar], route: str,
) -> None:
    """rag_core parses bodies too: 100,000 nested arrays are the contract's 400 there as
    well (it was a RecursionError), checked before the decoder runs."""
    response = rag_core_client.post(
        route, content=_deep(100_000),
        headers={"X-Internal-Token": INTERNAL_TOKEN, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
