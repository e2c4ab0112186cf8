"""What a token may do: permissions, platform permissions, index allow-lists, audit scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.auth import AccessPolicy, Principal
from ragward.errors import ConfigError, Forbidden
from ragward.settings import DEFAULT_ROLES, IndexAllow, load_settings


def _policy(**allow: dict[str, list[str]]) -> AccessPolicy:
    """The default roles plus an `auditor` and a `scraper`; ``allow``: roles=, tenants=."""
    permissions = {**DEFAULT_ROLES, "auditor": ["audit:read", "audit:read:all"],
                   "scraper": ["metrics:read"]}
    return AccessPolicy(permissions, IndexAllow(**allow))


def _who(tenant: str = "acme", *roles: str) -> Principal:
    return Principal(subject="alice", tenant=tenant, roles=roles or ("reader",))


def test_admin_star_never_implies_a_cross_tenant_permission() -> None:
    """`*` grants everything inside the tenant, but neither audit:read:all nor metrics:read:
    no default role reads across tenants; a role that names them does."""
    policy = _policy()
    admin = _who("acme", "admin")
    assert policy.allows(admin, "audit:read") and policy.allows(admin, "batch")
    assert not policy.allows(admin, "audit:read:all")
    assert not policy.allows(admin, "metrics:read")
    assert not any(policy.allows(_who("acme", role), "audit:read:all") for role in DEFAULT_ROLES)
    assert policy.allows(_who("acme", "auditor"), "audit:read:all")
    assert policy.allows(_who("acme", "scraper"), "metrics:read")


def test_audit_reads_are_scoped_to_the_callers_tenant() -> None:
    """No filter or the own tenant reads the own tenant; another tenant is refused unless the
    caller holds audit:read:all, which reads what it asks for (None: every tenant)."""
    policy = _policy()
    compliance = _who("acme", "compliance")
    assert policy.audit_tenant(compliance, None) == "acme"
    assert policy.audit_tenant(compliance, "acme") == "acme"
    with pytest.raises(Forbidden, match="audit:read:all"):
        policy.audit_tenant(compliance, "globex")
    with pytest.raises(Forbidden):
        policy.audit_tenant(_who("acme", "admin"), "globex")
    auditor = _who("acme", "auditor")
    assert policy.audit_tenant(auditor, "globex") == "globex"
    assert policy.audit_tenant(auditor, None) is None


def test_allow_lists_narrow_with_and_and_never_widen() -> None:
    """A tenant's list AND its roles' lists must both name the index; a role with no list
    adds no restriction but cannot lift another role's or the tenant's."""
    policy = _policy(tenants={"acme": ["handbook", "payroll"]},
                     roles={"reader": ["handbook", "wiki"]})
    reader = _who("acme", "reader")
    assert policy.index_allowed(reader, "handbook")
    assert not policy.index_allowed(reader, "payroll")  # tenant yes, role no
    assert not policy.index_allowed(reader, "wiki")  # role yes, tenant no
    assert not policy.index_allowed(_who("acme", "reader", "batch"), "payroll")
    assert policy.index_allowed(_who("acme", "batch"), "payroll")  # only the tenant's list
    assert policy.index_allowed(_who("globex", "batch"), "anything")  # no list applies
    with pytest.raises(Forbidden, match="not allowed"):
        policy.require(reader, "query", "payroll")


def test_tenant_and_role_allow_lists_do_not_share_a_namespace() -> None:
    """A tenant named like a role does not get that role's list, nor a role the tenant's:
    before, one flat map keyed both and OR-ed the lists."""
    policy = _policy(tenants={"reader": ["secret-index"]}, roles={"reader": ["handbook"]})
    tenant_named_reader = _who("reader", "batch")
    assert policy.index_allowed(tenant_named_reader, "secret-index")
    assert not policy.index_allowed(tenant_named_reader, "handbook")
    role_reader = _who("acme", "reader")
    assert policy.index_allowed(role_reader, "handbook")
    assert not policy.index_allowed(role_reader, "secret-index")


def test_the_old_flat_allow_list_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`RAGWARD_INDEX_ALLOW={"reader": [...]}` (the old flat form) stops start-up naming the
    variable, instead of being read with a different meaning."""
    monkeypatch.setenv("RAGWARD_INDEX_ALLOW", '{"reader": ["handbook"]}')
    with pytest.raises(ConfigError, match="RAGWARD_INDEX_ALLOW"):
        load_settings()
    monkeypatch.setenv("RAGWARD_INDEX_ALLOW", '{"roles": {"reader": ["handbook"]}}')
    assert load_settings().index_allow.roles == {"reader": ["handbook"]}


def test_allow_lists_and_roles_load_from_the_toml_file(tmp_path: Path) -> None:
    """The README's `[index_allow.roles]`, `[index_allow.tenants]` and `[roles]` tables are
    read as documented."""
    config = tmp_path / "ragward.toml"
    config.write_text(
        '[index_allow.roles]\ncontractor = ["default"]\n'
        '[index_allow.tenants]\nacme = ["default", "acme-docs"]\n'
        '[roles]\nreader = ["query"]\nauditor = ["audit:read", "audit:read:all"]\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    assert settings.index_allow == IndexAllow(roles={"contractor": ["default"]},
                                              tenants={"acme": ["default", "acme-docs"]})
    policy = AccessPolicy(settings.roles, settings.index_allow)
    assert policy.allows(_who("acme", "auditor"), "audit:read:all")
    assert not policy.index_allowed(_who("acme", "contractor"), "acme-docs")
