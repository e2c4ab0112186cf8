"""Hostile input never earns a 5xx (issue 15, "No 5xx from input"), over real HTTP.

Tokens signed with the right key but carrying any JSON type in a header or claim,
identity claims with control characters (which used to inject headers into the
split-mode forward to rag_core), bodies nested 100,000 levels deep, and garbage
``/v1/audit`` cursors and filters: each is a 4xx in the contract's error shape, and
nothing reaches rag_core.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from telemetry.audit_store import encode_cursor, open_store, store_reader
from telemetry.configuration import audit_store_config
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway
from tests.integration.test_gateway_auth import JwksServer, jwks  # noqa: F401  (fixture)
from tests.upstream_server import UpstreamServer

QUESTION = {"question": "How many days of annual leave do I get?"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _json(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "mallory", "tenant": "acme", "roles": ["admin"], "iat": now,
              "exp": now + 600}
    claims.update(overrides)
    return claims


def hs256(header: Any, payload: Any, secret: str = TEST_SECRET) -> str:
    """A token signed with the gateway's own secret, whatever JSON its parts hold."""
    signing_input = f"{_b64(_json(header))}.{_b64(_json(payload))}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def rs256(key: rsa.RSAPrivateKey, header: Any, payload: Any) -> str:
    """A token signed with a key the gateway's JWKS endpoint serves."""
    signing_input = f"{_b64(_json(header))}.{_b64(_json(payload))}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def _assert_contract_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == "invalid_token" and error["request_id"]


HS = {"alg": "HS256", "typ": "JWT"}
# Any JSON type in any header field, signed with the right secret.
HOSTILE_HEADERS: dict[str, Any] = {
    "alg list": {"alg": ["HS256"]},
    "alg object": {"alg": {}},
    "alg null": {"alg": None},
    "alg number": {"alg": 256},
    "kid object": {**HS, "kid": {}},
    "kid list": {**HS, "kid": ["k1"]},
    "typ object": {**HS, "typ": {"a": 1}},
    "cty list": {**HS, "cty": []},
    "crit number": {**HS, "crit": 5},
    "crit objects": {**HS, "crit": [{}]},
    "b64 string": {**HS, "b64": "x"},
    "jku object": {**HS, "jku": {}},
    "header is a list": ["HS256"],
    "header nested deep": b'{"alg":"HS256","x":' + b"[" * 2500 + b"]" * 2500 + b"}",
}
# Any JSON type in any claim, and identity claims that are not printable text.
HOSTILE_CLAIMS: dict[str, Any] = {
    "exp string": _claims(exp="x"),
    "exp list": _claims(exp=[1]),
    "exp boolean": _claims(exp=True),
    "exp huge integer": _claims(exp=10**400),
    "exp past year 9999": _claims(exp=1e300),
    "exp infinite": json.dumps(_claims()).replace('"exp": ', '"exp": Infinity, "_": ').encode(),
    "nbf string": _claims(nbf="x"),
    "iat object": _claims(iat={}),
    "iss list": _claims(iss=["a"]),
    "aud object": _claims(aud={}),
    "jti number": _claims(jti=5),
    "roles number": _claims(roles=5),
    "roles of numbers": _claims(roles=[1, 2]),
    "roles object": _claims(roles={"admin": True}),
    "roles too many": _claims(roles=["r"] * 65),
    "tenant list": _claims(tenant=[]),
    "tenant object": _claims(tenant={}),
    "tenant number": _claims(tenant=5),
    "sub null": _claims(sub=None),
    "sub number": _claims(sub=7),
    "sub empty": _claims(sub=""),
    "sub too long": _claims(sub="x" * 257),
    "payload is a list": [1, 2],
    "payload nested deep": b'{"sub":"a","x":' + b"[" * 2500 + b"]" * 2500 + b"}",
    "tenant CRLF (header injection)": _claims(tenant="acme\r\nX-Tenant: globex"),
    "tenant LF": _claims(tenant="acme\nx"),
    "tenant NUL": _claims(tenant="acme\x00"),
    "tenant DEL": _claims(tenant="acme\x7f"),
    "tenant C1 NEL": _claims(tenant="acme\x85"),
    "tenant U+2028": _claims(tenant="acme\u2028x"),
    "tenant U+2029": _claims(tenant="acme\u2029x"),
    "tenant bidi override": _claims(tenant="acme\u202e"),
    "tenant lone surrogate": json.dumps(_claims(tenant="@@")).replace("@@", "\\ud800").encode(),
    "sub CR": _claims(sub="mallory\rx"),
    "sub tab": _claims(sub="mallory\tx"),
    "sub lone surrogate": json.dumps(_claims(sub="@@")).replace("@@", "\\udfff").encode(),
    "role LF": _claims(roles=["admin\nx"]),
    "role NUL": _claims(roles=["admin", "\x00"]),
    "roles string with NUL": _claims(roles="admin \x00"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
async def test_any_json_type_in_a_signed_header_is_a_401(
    tmp_path: Path, upstream: UpstreamServer, case: str
) -> None:
    """`"alg": ["HS256"]` used to raise TypeError (a 500, and 40 of them paged): every
    header field of the wrong type is the contract's 401, audited as a denial."""
    token = hs256(HOSTILE_HEADERS[case], _claims())
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        response = await gw.client.post("/v1/query", json=QUESTION,
                                        headers={"Authorization": f"Bearer {token}"})
        decisions = [e.decision for e in gw.audit_events()]
    _assert_contract_401(response)
    assert upstream.received == [] and decisions == ["deny"]


@pytest.mark.parametrize("case", sorted(HOSTILE_CLAIMS))
async def test_any_json_type_or_control_character_in_a_signed_claim_is_a_401(
    tmp_path: Path, upstream: UpstreamServer, case: str
) -> None:
    """Claims of the wrong type or range, and identity claims holding CR, LF, NUL, other
    C0/C1 controls, U+2028/2029, bidi overrides or lone surrogates: 401 at
    authentication — in split mode CR/LF used to become a 500 when forwarding."""
    token = hs256(HS, HOSTILE_CLAIMS[case])
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        response = await gw.client.post("/v1/query", json=QUESTION,
                                        headers={"Authorization": f"Bearer {token}"})
    _assert_contract_401(response)
    assert upstream.received == []


async def test_printable_unicode_identities_still_pass(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """The check refuses control and separator characters, not non-ASCII text: a Chinese
    tenant and an accented subject with a space are answered and forwarded."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        response = await gw.client.post(
            "/v1/query", json=QUESTION, headers=bearer(tenant="租户", sub="José María"))
    assert response.status_code == 200
    assert upstream.headers[-1]["X-Tenant"] == "租户"


JWKS_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "alg list": ({"alg": ["RS256"], "kid": "k1"}, _claims()),
    "kid object": ({"alg": "RS256", "kid": {}}, _claims()),
    "kid list": ({"alg": "RS256", "kid": ["k1"]}, _claims()),
    "typ number": ({"alg": "RS256", "kid": "k1", "typ": 1}, _claims()),
    "exp string": ({"alg": "RS256", "kid": "k1"}, _claims(exp="x")),
    "exp huge": ({"alg": "RS256", "kid": "k1"}, _claims(exp=10**400)),
    "roles number": ({"alg": "RS256", "kid": "k1"}, _claims(roles=5)),
    "tenant CRLF": ({"alg": "RS256", "kid": "k1"}, _claims(tenant="acme\r\nX-Evil: 1")),
    "sub U+2028": ({"alg": "RS256", "kid": "k1"}, _claims(sub="a\u2028b")),
}


async def test_the_jwks_path_refuses_the_same_tokens_with_401(
    tmp_path: Path, upstream: UpstreamServer, jwks: JwksServer  # noqa: F811
) -> None:
    """RS256 via JWKS: a correctly signed token still gets 401 for a wrong JSON type in
    its header or claims or a control character in an identity claim; a clean one 200."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.add("k1", key, "RS256")
    settings = gateway_settings(tmp_path, upstream.url, jwks_url=jwks.url)
    async with running_gateway(settings) as gw:
        clean = await gw.client.post("/v1/query", json=QUESTION, headers={
            "Authorization": f"Bearer {rs256(key, {'alg': 'RS256', 'kid': 'k1'}, _claims())}"})
        assert clean.status_code == 200
        for case, (header, payload) in JWKS_CASES.items():
            response = await gw.client.post("/v1/query", json=QUESTION, headers={
                "Authorization": f"Bearer {rs256(key, header, payload)}"})
            assert response.status_code == 401, case
            _assert_contract_401(response)
    assert len(upstream.received) == 1


def _deep(levels: int, opener: str = "[", closer: str = "]") -> str:
    return opener * levels + closer * levels


DEEP_BODIES = {
    "arrays": _deep(100_000),
    "question arrays": '{"question": ' + _deep(100_000) + "}",
    "objects": '{"a":' * 40_000 + "1" + "}" * 40_000,
    "mixed": '[{"a":' * 30_000 + "1" + "}]" * 30_000,
}


@pytest.mark.parametrize("route", ["/v1/query", "/v1/query/batch"])
@pytest.mark.parametrize("case", sorted(DEEP_BODIES))
async def test_a_body_nested_100000_deep_is_a_400_on_every_body_route(
    tmp_path: Path, upstream: UpstreamServer, route: str, case: str
) -> None:
    """RecursionError in the JSON decoder used to be a 500: the depth is measured before
    parsing and anything deeper than 32 levels is the contract's 400."""
    settings = gateway_settings(tmp_path, upstream.url, max_body_bytes=1_000_000)
    async with running_gateway(settings) as gw:
        response = await gw.client.post(
            route, content=DEEP_BODIES[case],
            headers={**bearer(roles=["admin"]), "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_request" and "nested deeper than 32" in error["message"]
    assert upstream.received == []


async def test_brackets_inside_strings_and_moderate_nesting_are_not_refused(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """Only structure counts: a question full of brackets is answered; 32 levels of
    nesting parse (and fail validation with a 422, not the depth 400)."""
    async with running_gateway(gateway_settings(tmp_path, upstream.url)) as gw:
        text = await gw.client.post(
            "/v1/query", json={"question": "[{" * 1500 + ' "quoted \\" [[' + "}]" * 1500},
            headers=bearer())
        nested = await gw.client.post(
            "/v1/query", content='{"question": ' + _deep(31) + "}",
            headers={**bearer(), "Content-Type": "application/json"})
    assert text.status_code == 200
    assert nested.status_code == 422 and nested.json()["error"]["code"] == "validation_error"


BAD_AUDIT_QUERIES: list[tuple[dict[str, str], int, str]] = [
    ({"cursor": encode_cursor(10**30, 0, 0)}, 400, "cursor"),
    ({"cursor": encode_cursor(2**63, 0, 0)}, 400, "cursor"),
    ({"cursor": encode_cursor(-(2**70), 0, 0)}, 400, "cursor"),
    ({"cursor": encode_cursor(0, 2**40, 0)}, 400, "cursor"),
    ({"cursor": encode_cursor(0, 0, -1)}, 400, "cursor"),
    ({"cursor": _b64(b"[[[[1]]]]")}, 400, "cursor"),
    ({"cursor": _b64(b"[" * 3000)}, 400, "cursor"),
    ({"cursor": _b64(b'{"a": [1, 2, 3]}')}, 400, "cursor"),
    ({"cursor": _b64(b"[1.5, 0, 0]")}, 400, "cursor"),
    ({"cursor": _b64(b"[true, 0, 0]")}, 400, "cursor"),
    ({"cursor": _b64(b"[1" + b"0" * 5000 + b", 0, 0]")[:4000]}, 400, "cursor"),
    ({"cursor": "!!!not base64!!!"}, 400, "cursor"),
    ({"cursor": _b64(b"\xff\xfe\x00")}, 400, "cursor"),
    ({"limit": "0"}, 422, "limit"),
    ({"limit": "1001"}, 422, "limit"),
    ({"limit": "9" * 40}, 422, "limit"),
    ({"limit": "-5"}, 422, "limit"),
    ({"limit": "ten"}, 422, "limit"),
    ({"since": "yesterday"}, 422, "since"),
    ({"until": "2026-13-45T99:00:00Z"}, 422, "until"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "since"),
    # another tenant (its name is not the caller's): refused before it is looked at
    ({"tenant": "acme\x00"}, 403, "audit:read:all"),
    ({"subject": "a\r\nb"}, 422, "subject"),
    ({"request_id": "x" * 300}, 422, "request_id"),
]


async def test_garbage_audit_cursors_and_filters_are_4xx_in_the_contract_shape(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """Huge integers (which overflowed SQLite's INTEGER: a 500), nested JSON, garbage
    base64, wrong types, an inverted time range, out-of-range limits, control characters
    in filters: every one is 400 (cursor) or 422 (the field), never a 5xx."""
    settings = gateway_settings(tmp_path, upstream.url, quota_rpm=1_000_000)
    store = open_store(audit_store_config(settings))
    try:
        async with running_gateway(settings, audit_reader=store_reader(store)) as gw:
            headers = bearer(roles=["compliance"])
            for params, status, field in BAD_AUDIT_QUERIES:
                response = await gw.client.get("/v1/audit", params=params, headers=headers)
                assert response.status_code == status, (params, response.text)
                error = response.json()["error"]
                assert set(error) == {"code", "message", "request_id"}
                assert field in error["message"], (params, error)
            ok = await gw.client.get("/v1/audit", params={"limit": "5"}, headers=headers)
            assert ok.status_code == 200
    finally:
        await store.close()
