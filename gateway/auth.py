"""Who is calling: bearer JWT verification with pyjwt (docs/api.md, "Tokens and roles").

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

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import structlog
from jwt import PyJWK, PyJWKSet
from jwt.types import Options

from ragward.errors import Forbidden, Unauthenticated
from ragward.identity import (
    MAX_ROLE_CHARS,
    MAX_ROLES,
    MAX_SUBJECT_CHARS,
    MAX_TENANT_CHARS,
    is_identity,
)
from ragward.refresh_gate import RefreshGate
from ragward.settings import PLATFORM_PERMISSIONS, IndexAllow

log = structlog.get_logger(__name__)

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# Algorithms accepted per JWK key type: a key is only ever used with its own family.
ALGORITHMS_BY_KEY_TYPE: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
ASYMMETRIC_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KEY_TYPE.values())
AUDIT_READ_ALL = "audit:read:all"
METRICS_READ = "metrics:read"
# NumericDate claims beyond year 9999 are not times (and overflow float arithmetic).
MAX_NUMERIC_DATE = 253_402_300_799
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
    """Keys from a JWKS endpoint by ``kid``, refetched on rotation but rate-limited
    (:class:`ragward.refresh_gate.RefreshGate`)."""

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
        self._keys: dict[str, PyJWK] = {}
        self._gate = RefreshGate(min_refresh_interval_s)

    async def key(self, kid: str) -> PyJWK | None:
        if kid not in self._keys or self._gate.age() > self._ttl_s:
            await self._gate.refresh(self._fetch)
        return self._keys.get(kid)

    async def _fetch(self) -> None:
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


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """What a token is checked against: the HMAC secret and/or a JWKS endpoint (at
    least one), the expected issuer and audience, and where identity sits in the claims."""

    secret: str | None = field(repr=False)
    jwks_url: str | None
    jwks_cache_ttl_s: float
    jwks_min_refresh_interval_s: float
    issuer: str | None
    audience: str | None
    leeway_s: float
    tenant_claim: str
    roles_claim: str
    max_token_bytes: int


def jwks_cache(config: TokenConfig, session: aiohttp.ClientSession) -> JwksCache | None:
    """The JWKS keys ``config`` names, fetched over ``session``; None without a JWKS URL."""
    if not config.jwks_url:
        return None
    return JwksCache(config.jwks_url, session, config.jwks_cache_ttl_s,
                     config.jwks_min_refresh_interval_s)


class Authenticator:
    def __init__(self, config: TokenConfig, jwks: JwksCache | None = None) -> None:
        self._secret = config.secret
        self._jwks = jwks
        self._issuer = config.issuer
        self._audience = config.audience
        self._leeway = config.leeway_s
        self._tenant_claim = config.tenant_claim
        self._roles_claim = config.roles_claim
        self._max_bytes = config.max_token_bytes
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
        if not is_identity(subject, MAX_SUBJECT_CHARS):
            raise TokenRejected("bad_subject")
        if not is_identity(tenant, MAX_TENANT_CHARS):
            raise TokenRejected("bad_tenant")
        if not (isinstance(roles, list) and len(roles) <= MAX_ROLES
                and all(is_identity(r, MAX_ROLE_CHARS) for r in roles)):
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


class AccessPolicy:
    """Roles → permissions (the defaults in docs/api.md), plus the optional index allow-lists.

    ``*`` grants every permission inside the caller's tenant; the cross-tenant ones
    (:data:`~ragward.settings.PLATFORM_PERMISSIONS`: ``audit:read:all``,
    ``metrics:read``) only when a role names them.
    """

    def __init__(self, roles: dict[str, list[str]], index_allow: IndexAllow) -> None:
        self._permissions = {role: frozenset(perms) for role, perms in roles.items()}
        self._role_indexes = {n: frozenset(i) for n, i in index_allow.roles.items()}
        self._tenant_indexes = {n: frozenset(i) for n, i in index_allow.tenants.items()}

    def permissions(self, principal: Principal) -> frozenset[str]:
        granted: set[str] = set()
        for role in principal.roles:
            granted |= self._permissions.get(role, frozenset())
        return frozenset(granted)

    def allows(self, principal: Principal, permission: str) -> bool:
        granted = self.permissions(principal)
        if permission in granted:
            return True
        return "*" in granted and permission not in PLATFORM_PERMISSIONS

    def require(self, principal: Principal, permission: str, index: str | None = None) -> None:
        if not self.allows(principal, permission):
            raise Forbidden(f"the token's roles do not grant '{permission}'")
        if index is not None and not self.index_allowed(principal, index):
            raise Forbidden(f"index '{index}' is not allowed for this caller")

    def index_allowed(self, principal: Principal, index: str) -> bool:
        """The allow-lists only narrow (rag_core already limits a tenant to its own and
        shared indexes): the tenant's list, if any, AND the lists of the caller's roles
        that carry one (together, as roles add up) must name the index."""
        tenant_list = self._tenant_indexes.get(principal.tenant)
        if tenant_list is not None and index not in tenant_list:
            return False
        role_lists = [self._role_indexes[r] for r in principal.roles if r in self._role_indexes]
        return not role_lists or any(index in allowed for allowed in role_lists)

    def audit_tenant(self, principal: Principal, asked: str | None) -> str | None:
        """The tenant filter an audit read runs with.

        The caller's own tenant, whether it asked for it or gave no filter; with
        ``audit:read:all``, what it asked for (None: every tenant). Another tenant
        without that permission is refused.
        """
        if self.allows(principal, AUDIT_READ_ALL):
            return asked
        if asked is None or asked == principal.tenant:
            return principal.tenant
        raise Forbidden(f"reading another tenant's audit records needs '{AUDIT_READ_ALL}'")


class MetricsAccess:
    """``RAGWARD_METRICS_AUTH=token``: a valid bearer token whose roles grant
    ``metrics:read`` (a platform permission: ``*`` does not imply it)."""

    def __init__(self, authenticator: Authenticator, policy: AccessPolicy) -> None:
        self._authenticator = authenticator
        self._policy = policy

    async def check(self, authorization: str | None) -> None:
        principal = await self._authenticator.authenticate(authorization)
        self._policy.require(principal, METRICS_READ)


def metrics_access_lifespan(
    tokens: TokenConfig | None, policy: AccessPolicy,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan putting a :class:`MetricsAccess` into ``app.state`` for a consumer's
    HTTP app (the gateway builds its own from its components). Nothing when ``tokens``
    is None (``RAGWARD_METRICS_AUTH=none``)."""
    from telemetry.consumer_http import METRICS_ACCESS

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if tokens is None:
            yield
            return
        async with contextlib.AsyncExitStack() as stack:
            jwks = None
            if tokens.jwks_url:
                session = aiohttp.ClientSession()
                stack.push_async_callback(session.close)
                jwks = jwks_cache(tokens, session)
            app.state[METRICS_ACCESS] = MetricsAccess(Authenticator(tokens, jwks), policy)
            yield

    return lifespan
