"""Authentication and authorisation at the gateway (docs/api.md), end to end over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ragward.devservices import free_port
from tests.gateway_harness import bearer, gateway_settings, make_token, running_gateway
from tests.upstream_server import UpstreamServer

QUESTION = {"question": "How many days of annual leave do I get?"}


class JwksServer:
    """A real JWKS endpoint whose key set the test can rotate."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def add(self, kid: str, private_key: Any, alg: str) -> None:
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(
            private_key.public_key()))
        self.keys[kid] = {**jwk, "kid": kid, "alg": alg, "use": "sig"}

    async def _serve(self, _: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": list(self.keys.values())})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/jwks.json", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"


@pytest.fixture
async def jwks() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    await server.start()
    yield server
    await server.stop()


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(key: Any, alg: str, kid: str | None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "bob", "tenant": "acme", "roles": ["reader"], "iat": now,
               "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=alg,
                      headers={"kid": kid} if kid else None)


def _unsigned(**claims: Any) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    now = int(time.time())
    body = {"sub": "eve", "tenant": "acme", "roles": ["admin"], "exp": now + 600, **claims}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}."


async def _status(gw: Any, token: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = await gw.client.post("/v1/query", json=QUESTION, headers=headers)
    return response.status_code, response.json(), dict(response.headers)


async def test_valid_hs256_token_is_answered(tmp_path: Path, upstream: UpstreamServer) -> None:
    """A valid HS256 token with the query permission gets an answer from rag_core."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        status, body, headers = await _status(gw, make_token())
    assert status == 200
    assert body["answer"].startswith("answer to:")
    assert headers["x-request-id"] == body["request_id"]


@pytest.mark.parametrize(
    ("case", "token_factory"),
    [
        ("expired", lambda: make_token(exp=int(time.time()) - 3600)),
        ("not yet valid", lambda: make_token(nbf=int(time.time()) + 3600)),
        ("missing exp", lambda: make_token(exp=None)),
        ("bad signature", lambda: make_token(secret="another-secret-0123456789-0123456789")),
        ("alg none", _unsigned),
        ("garbage", lambda: "not-a-jwt"),
        ("oversized", lambda: make_token(padding="x" * 9000)),
        ("missing tenant", lambda: make_token(tenant=None)),
    ],
)
async def test_bad_hs256_tokens_get_401(
    tmp_path: Path, upstream: UpstreamServer, case: str, token_factory: Any
) -> None:
    """Every invalid token gets the same 401 with WWW-Authenticate and no detail."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        status, body, headers = await _status(gw, token_factory())
        events = gw.audit_events()
    assert status == 401, case
    assert headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert body["error"]["code"] == "invalid_token"
    assert body["error"]["message"] == "missing or invalid bearer token"
    assert upstream.received == []
    assert [e.decision for e in events] == ["deny"]


async def test_missing_token_gets_401(tmp_path: Path, upstream: UpstreamServer) -> None:
    """No Authorization header at all is a 401, audited."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        status, _, headers = await _status(gw, None)
        assert gw.audit_events()[0].reason == "missing"
    assert status == 401 and "www-authenticate" in headers


async def test_issuer_and_audience_are_enforced(tmp_path: Path, upstream: UpstreamServer) -> None:
    """With iss/aud configured, a token for another issuer or audience is refused."""
    settings = gateway_settings(tmp_path, upstream.url, jwt_issuer="https://idp.example",
                                jwt_audience="ragward")
    async with running_gateway(settings) as gw:
        good = make_token(iss="https://idp.example", aud="ragward")
        wrong_iss = make_token(iss="https://evil.example", aud="ragward")
        wrong_aud = make_token(iss="https://idp.example", aud="other")
        assert (await _status(gw, good))[0] == 200
        assert (await _status(gw, wrong_iss))[0] == 401
        assert (await _status(gw, wrong_aud))[0] == 401


async def test_role_without_permission_gets_403(tmp_path: Path, upstream: UpstreamServer) -> None:
    """A valid token whose roles lack `query` (or `batch`) is forbidden, not unauthenticated."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        status, body, _ = await _status(gw, make_token(roles=["compliance"]))
        assert status == 403 and body["error"]["code"] == "forbidden"
        batch = await gw.client.post("/v1/query/batch", json={"questions": ["a", "b"]},
                                     headers=bearer(roles=["reader"]))
        assert batch.status_code == 403
        allowed = await gw.client.post("/v1/query/batch", json={"questions": ["a", "b"]},
                                       headers=bearer(roles=["batch"]))
        assert allowed.status_code == 200 and len(allowed.json()["results"]) == 2
        assert [e.decision for e in gw.audit_events()] == ["deny", "deny", "allow"]


async def test_asymmetric_keys_from_jwks(
    tmp_path: Path, upstream: UpstreamServer, jwks: JwksServer
) -> None:
    """RS256, PS256, ES256 and EdDSA tokens verify against JWKS keys chosen by kid."""
    keys = {"rs": (_rsa(), "RS256"), "ps": (_rsa(), "PS256"),
            "es": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
            "ed": (ed25519.Ed25519PrivateKey.generate(), "EdDSA")}
    for kid, (key, alg) in keys.items():
        jwks.add(kid, key, alg)
    settings = gateway_settings(tmp_path, upstream.url, jwks_url=jwks.url)
    async with running_gateway(settings) as gw:
        for kid, (key, alg) in keys.items():
            assert (await _status(gw, _sign(key, alg, kid)))[0] == 200, alg


async def test_algorithm_confusion_and_unknown_kid_are_refused(
    tmp_path: Path, upstream: UpstreamServer, jwks: JwksServer
) -> None:
    """HS256 signed with the RSA public key, a kid the JWKS lacks, an RS key used
    as ES: all 401 — and a flood of unknown kids refetches the JWKS at most once."""
    key = _rsa()
    jwks.add("rs", key, "RS256")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    settings = gateway_settings(tmp_path, upstream.url, jwks_url=jwks.url,
                                jwks_min_refresh_interval_s=60)
    async with running_gateway(settings) as gw:
        assert (await _status(gw, _sign(key, "RS256", "rs")))[0] == 200
        fetches = jwks.fetches
        # pyjwt itself refuses a PEM as HMAC key, so forge the HS256 signature by hand
        header = {"alg": "HS256", "typ": "JWT", "kid": "rs"}
        forged = _forge_hs256(header, public_pem)
        assert (await _status(gw, forged))[0] == 401
        for i in range(20):
            assert (await _status(gw, _sign(_rsa(), "RS256", f"unknown-{i}")))[0] == 401
        assert jwks.fetches - fetches <= 1


def _forge_hs256(header: dict[str, Any], secret: bytes) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    payload = {"sub": "eve", "tenant": "acme", "roles": ["admin"], "exp": now + 600}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_key_rotation_is_picked_up_without_restart(
    tmp_path: Path, upstream: UpstreamServer, jwks: JwksServer
) -> None:
    """A new kid published at the JWKS server is accepted by the running gateway."""
    old, new = _rsa(), _rsa()
    jwks.add("2026-01", old, "RS256")
    settings = gateway_settings(tmp_path, upstream.url, jwks_url=jwks.url,
                                jwks_min_refresh_interval_s=0)
    async with running_gateway(settings) as gw:
        assert (await _status(gw, _sign(old, "RS256", "2026-01")))[0] == 200
        assert (await _status(gw, _sign(new, "RS256", "2026-02")))[0] == 401
        jwks.keys.clear()
        jwks.add("2026-02", new, "RS256")
        assert (await _status(gw, _sign(new, "RS256", "2026-02")))[0] == 200


async def test_a_cached_verification_still_expires(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """A token verified once is not re-verified on reuse, but it stops working at `exp`."""
    settings = gateway_settings(tmp_path, upstream.url, jwt_leeway_s=0)
    token = make_token(exp=int(time.time()) + 2)
    async with running_gateway(settings) as gw:
        assert (await _status(gw, token))[0] == 200
        assert (await _status(gw, token))[0] == 200
        await asyncio.sleep(3.1)
        assert (await _status(gw, token))[0] == 401
