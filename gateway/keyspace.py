"""Where ragward keeps a tenant's state in Redis: one hash slot per tenant.

Every key that belongs to a tenant — its request window, its token budgets, its
cached answers — carries the tenant as a Redis Cluster *hash tag* (``{tenant}``),
so they all hash to one slot: a Lua script or a multi-key command for one tenant
never spans slots (no ``CROSSSLOT``), on a cluster as on one node, and a tenant's
quota check and cache read go to the same node, in one round trip.

Redis hashes the text between the first ``{`` and the first ``}`` after it. A
prefix therefore holds no brace, and a tenant name that holds one (``a}b``) still
gives every key of that tenant the same tag (``a``): a shared slot, never a
shared key, since the whole name stays in the key. Tenants are never empty
(:mod:`gateway.auth` refuses such tokens), so the tag is never ``{}``, which Redis
would ignore.
"""

from __future__ import annotations

__all__ = ["check_prefix", "tenant_scope"]


def check_prefix(prefix: str) -> str:
    """``prefix`` unchanged; a brace in it would move the hash tag off the tenant."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"a Redis key prefix holds no braces (hash tags): {prefix!r}")
    return prefix


def tenant_scope(prefix: str, tenant: str) -> str:
    """The start every key of ``tenant`` under ``prefix`` shares: ``prefix{tenant}``."""
    return f"{prefix}{{{tenant}}}"
