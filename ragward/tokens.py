"""Mint development HS256 tokens (``ragward token``) with the configured secret."""

from __future__ import annotations

import argparse
import sys
import time
import uuid

import jwt

from ragward.errors import ConfigError
from ragward.settings import Settings, env_name


def mint(settings: Settings, sub: str, tenant: str, roles: list[str], ttl: int = 3600) -> str:
    if settings.jwt_secret is None:
        raise ConfigError(f"{env_name('jwt_secret')} is not set; cannot mint a token")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        settings.jwt_tenant_claim: tenant,
        settings.jwt_roles_claim: roles,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.ttl <= 0:
        print("ragward token: --ttl must be positive", file=sys.stderr)
        return 2
    print(mint(settings, args.sub, args.tenant, args.roles, args.ttl))
    return 0
