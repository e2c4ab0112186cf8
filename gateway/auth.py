"""Who is calling: bearer JWT verification with pyjwt (CONTRACT §5).

* HS256/384/512 with the shared secret; RS256/PS256/ES256/EdDSA from a JWKS
  endpoint, the key chosen by ``kid``. Each key type has its own algorithm
  allow-list, so an HMAC token can never be checked against a public key
  ("algorithm confusion") and ``alg: none`` is never accepted.
* JWKS keys are cached; an unknown ``kid`` triggers at most one refetch per
  ``jwks_min_refresh_interval_s``, so a flood of made-up kids cannot hammer the
  JWKS server.
* ``exp`` is required; ``nbf``/``iat`` are checked with a small leeway;
  ``iss``/``aud`` when configured.
* Every field is hostile JSON until checked: a header or claim of the wrong JSON
  type (``"alg": ["HS256"]``, ``"exp": "x"``, ``"roles": 5``), a time claim out of
  range, nesting deep enough to exhaust the parser — all are a 401, never a 500.
  Identity claims (``sub``, tenant, roles) must be printable text: control
  characters, line and paragraph separators, format characters and lone
  surrogates would travel into headers (``X-Tenant`` to rag_core), logs, metric
  labels and events, so they are refused at authentication.

Every failure raises :class:`~ragward.errors.Unauthenticated` with the same
generic message: the client learns nothing that helps an attacker. The reason
is kept on the exception for the audit log.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import aiohttp
import jwt
import structlog
from jwt import PyJWK, PyJWKSet
from jwt.types import Options

from ragward.errors import Forbidden, Unauthenticated
from ragward.settings import Settings

log = structlog.get_logger(__name__)

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# Algorithms accepted per JWK key type: a key is only ever used with its own family.
ALGORITHMS_BY_KEY_TYPE: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
ASYMMETRIC_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KEY_TYPE.values())
# NumericDate claims beyond year 9999 are not times (and overflow float arithmetic).
MAX_NUMERIC_DATE = 253_402_300_799
MAX_SUBJECT_CHARS = 256
MAX_TENANT_CHARS = 128
MAX_ROLES, MAX_ROLE_CHARS = 64, 128
# Registered header parameters (RFC 7515 §4.1) and claims (RFC 7519 §4.1) that are
# strings when present; a token with another JSON type there is malformed.
_STRING_HEADERS = ("alg", "kid", "typ", "cty", "jku", "x5u", "x5t", "x5t#S256")
_STRING_CLAIMS = ("iss", "jti")
# What pyjwt may raise on well-signed JSON of unexpected types or depth.
_MALFORMED = (TypeError, ValueError, OverflowError, RecursionError)


class TokenRejected(Unauthenticated):
    """A token failed verification; ``reason`` is for the audit log, never the client."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant: str
    roles: tuple[str, ...]
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class JwksCache:
    """Keys from a JWKS endpoint by ``kid``, refetched on rotation but rate-limited."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        ttl_s: float,
        min_refresh_interval_s: float,
    ) -> None:
        self._url = url
        self._session = session
        self._ttl_s = ttl_s
        self._min_interval_s = min_refresh_interval_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> PyJWK | None:
        now = time.monotonic()
        if kid not in self._keys or now - self._fetched_at > self._ttl_s:
            await self._refresh(now)
        return self._keys.get(kid)

    async def _refresh(self, requested_at: float) -> None:
        async with self._lock:
            if self._fetched_at >= requested_at:  # someone refreshed while we waited
                return
            if time.monotonic() - self._fetched_at < self._min_interval_s:
                return
            self._fetched_at = time.monotonic()
            try:
                async with self._session.get(
                    self._url, timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    response.raise_for_status()
                    keys = PyJWKSet.from_dict(await response.json(content_type=None)).keys
            except (aiohttp.ClientError, TimeoutError, jwt.PyJWTError, ValueError) as exc:
                log.warning("jwks_fetch_failed", url=self._url, error=type(exc).__name__)
                return
            self._keys = {k.key_id: k for k in keys if k.key_id}
            log.info("jwks_refreshed", keys=len(self._keys))


class _VerifiedTokens:
    """Tokens whose signature already verified, so a client reusing its token (the
    common case) costs a dictionary lookup instead of a signature check. Time claims
    are re-checked on every use; entries are bounded and dropped at ``exp`` or after
    ``ttl_s``, so a key withdrawn from the JWKS stops being honoured soon after."""

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 300.0) -> None:
        self._ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._max = max_entries

    def get(self, token: str, now: float, leeway: float) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        expires, principal = entry
        if now > expires + leeway:
            del self._entries[token]
            return None
        nbf = principal.claims.get("nbf")
        if isinstance(nbf, int | float) and now + leeway < nbf:
            return None
        self._entries.move_to_end(token)
        return principal

    def put(self, token: str, principal: Principal) -> None:
        until = min(float(principal.claims["exp"]), time.time() + self._ttl_s)
        self._entries[token] = (until, principal)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)


class Authenticator:
    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._jwks = jwks
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        self._tenant_claim = settings.jwt_tenant_claim
        self._roles_claim = settings.jwt_roles_claim
        self._max_bytes = settings.jwt_max_token_bytes
        self._options: Options = {
            "require": ["exp", "sub"],
            "verify_aud": self._audience is not None,
            "verify_iss": self._issuer is not None,
        }
        self._verified = _VerifiedTokens()

    async def authenticate(self, authorization: str | None) -> Principal:
        token = self._bearer(authorization)
        if known := self._verified.get(token, time.time(), self._leeway):
            return known
        principal = await self._verify(token)
        self._verified.put(token, principal)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, *_MALFORMED):
            raise TokenRejected("malformed") from None
        if not _well_typed_header(header):
            raise TokenRejected("malformed_header")
        alg = header.get("alg")
        if alg in HMAC_ALGORITHMS:
            if self._secret is None:
                raise TokenRejected("hmac_not_configured")
            key: Any = self._secret
        elif alg in ASYMMETRIC_ALGORITHMS:
            key = await self._public_key(header.get("kid"), alg)
        else:
            raise TokenRejected("algorithm_not_allowed")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("not_yet_valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"missing_{exc.claim}") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise TokenRejected("wrong_issuer_or_audience") from None
        except jwt.PyJWTError:
            raise TokenRejected("invalid_signature_or_claims") from None
        except _MALFORMED:
            raise TokenRejected("malformed_claims") from None
        return self._principal(claims)

    def _bearer(self, authorization: str | None) -> str:
        if not authorization:
            raise TokenRejected("missing")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise TokenRejected("not_bearer")
        if len(token) > self._max_bytes:
            raise TokenRejected("oversized")
        return token

    async def _public_key(self, kid: object, alg: str) -> Any:
        if self._jwks is None:
            raise TokenRejected("jwks_not_configured")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise TokenRejected("missing_kid")
        jwk = await self._jwks.key(kid)
        if jwk is None:
            raise TokenRejected("unknown_kid")
        allowed = ALGORITHMS_BY_KEY_TYPE.get(str(jwk.key_type), frozenset())
        declared = getattr(jwk, "algorithm_name", None)
        if alg not in allowed or (declared and declared != alg and declared in allowed):
            raise TokenRejected("algorithm_key_mismatch")
        return jwk.key

    def _principal(self, claims: dict[str, Any]) -> Principal:
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_numeric_date(claims[name]):
                raise TokenRejected(f"bad_{name}")
        if not _well_typed_claims(claims):
            raise TokenRejected("malformed_claims")
        subject = claims.get("sub")
        tenant = claims.get(self._tenant_claim)
        roles = claims.get(self._roles_claim, [])
        if isinstance(roles, str):
            roles = roles.split()
        if not _is_identity(subject, MAX_SUBJECT_CHARS):
            raise TokenRejected("bad_subject")
        if not _is_identity(tenant, MAX_TENANT_CHARS):
            raise TokenRejected("bad_tenant")
        if not (isinstance(roles, list) and len(roles) <= MAX_ROLES
                and all(_is_identity(r, MAX_ROLE_CHARS) for r in roles)):
            raise TokenRejected("bad_roles")
        return Principal(subject=subject, tenant=tenant, roles=tuple(roles), claims=claims)


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _well_typed_header(header: dict[str, Any]) -> bool:
    return (
        isinstance(header.get("alg"), str)
        and all(isinstance(header[k], str) for k in _STRING_HEADERS if k in header)
        and ("crit" not in header or _is_str_list(header["crit"]))
        and ("x5c" not in header or _is_str_list(header["x5c"]))
        and ("jwk" not in header or isinstance(header["jwk"], dict))
        and ("b64" not in header or isinstance(header["b64"], bool))  # RFC 7797
    )


def _well_typed_claims(claims: dict[str, Any]) -> bool:
    aud = claims.get("aud", "")
    return (isinstance(aud, str) or _is_str_list(aud)) and all(
        isinstance(claims[k], str) for k in _STRING_CLAIMS if k in claims
    )


def _is_numeric_date(value: object) -> bool:
    """A JSON number (not a boolean) of seconds within years 0..9999."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and abs(value) <= MAX_NUMERIC_DATE)  # NaN fails this comparison too


def _is_identity(value: object, max_chars: int) -> TypeGuard[str]:
    """Non-empty printable text: ``str.isprintable`` is False for every control (C0,
    C1), format, surrogate, private-use, unassigned and separator character except the
    ASCII space — so no CR/LF/NUL, U+2028/2029, bidi overrides or lone surrogates."""
    return isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable()


class AccessPolicy:
    """Roles → permissions (CONTRACT §5 defaults), plus optional index allow-lists."""

    def __init__(self, roles: dict[str, list[str]], index_allow: dict[str, list[str]]) -> None:
        self._permissions = {role: frozenset(perms) for role, perms in roles.items()}
        self._index_allow = {name: frozenset(indexes) for name, indexes in index_allow.items()}

    def permissions(self, principal: Principal) -> frozenset[str]:
        granted: set[str] = set()
        for role in principal.roles:
            granted |= self._permissions.get(role, frozenset())
        return frozenset(granted)

    def require(self, principal: Principal, permission: str, index: str | None = None) -> None:
        granted = self.permissions(principal)
        if "*" not in granted and permission not in granted:
            raise Forbidden(f"the token's roles do not grant '{permission}'")
        if index is not None and not self._index_allowed(principal, index):
            raise Forbidden(f"index '{index}' is not allowed for this caller")

    def _index_allowed(self, principal: Principal, index: str) -> bool:
        # Each of the caller's roles and its tenant may carry an allow-list; when any
        # applies, the index must be on one of them.
        lists = [self._index_allow[n] for n in (principal.tenant, *principal.roles)
                 if n in self._index_allow]
        return not lists or any(index in allowed for allowed in lists)
