"""Tenants stay apart (issue 15): audit reads, indexes, cache, PII in metadata, audit fields.

`ragward serve` on real Kafka (audit and usage events, the audit consumer) and real
Redis (quotas and the answer cache), over three indexes: the shared sample
handbook (`default`), `acme-docs` owned by tenant acme (its file name and title
carry PII) and `globex-payroll` owned by tenant globex. The split deployment
(gateway → rag_core over HTTP) is checked the same way at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.auth import Principal
from gateway.components import Components
from gateway.fingerprint import normalise_question
from rag_core.app import create_app as create_rag_core
from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.serve import create_serve_app
from ragward.settings import DEFAULT_ROLES, Settings, load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway, serving

EMAIL, PHONE, CN_MOBILE = "jane.doe@example.com", "555-867-5309", "13800138000"
HASH_KEY = "audit-hash-key-for-tests-0123456789abcdef"
ROLES = {**DEFAULT_ROLES, "auditor": ["audit:read", "audit:read:all"],
         "narrow": ["query"], "scraper": ["metrics:read"]}
INTERNAL = "internal-token-0123456789-0123456789"


def _corpus(root: Path, name: str, title: str, text: str) -> Path:
    root.mkdir(parents=True)
    (root / name).write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
    return root


def _ingest_tenants(settings: Settings, root: Path) -> None:
    """The shared handbook, acme's documents (PII in file name and title), globex's."""
    ingest(ingest_config(settings), [], sample=True, show_progress=False)
    acme = _corpus(root / "acme", f"{EMAIL}.md", f"Escalations: {EMAIL} {PHONE}",
                   "Acme escalations go to the on-call duty manager within one hour.")
    ingest(ingest_config(settings), [acme], "acme-docs", owner="acme", show_progress=False)
    globex = _corpus(root / "globex", "payroll.md", "Globex payroll",
                     "Globex salaries are paid on the 25th; the payroll secret is PAYROLL-77.")
    ingest(ingest_config(settings), [globex], "globex-payroll", owner="globex", show_progress=False)


@pytest.fixture(scope="module")
def serve_settings(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, redis_url: str
) -> Settings:
    unique = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp("tenancy")
    settings = load_settings(
        data_dir=root / "data", jwt_secret=TEST_SECRET, kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url, topic_audit=f"audit-{unique}", topic_usage=f"usage-{unique}",
        topic_alerts=f"alerts-{unique}", topic_dead_letter=f"dead-{unique}", roles=ROLES,
        index_allow={"roles": {"narrow": ["default"]}}, audit_hash_key=HASH_KEY,
    )
    _ingest_tenants(settings, root / "docs")
    return settings


@pytest.fixture(scope="module")
async def served(serve_settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_serve_app(serve_settings)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client, app


async def _records(client: httpx.AsyncClient, query: str, *, until: Any) -> list[dict[str, Any]]:
    """Audit records for ``query`` (as the auditor), once ``until(records)`` holds."""
    auditor = bearer(sub="auditor", tenant="platform", roles=["auditor"])
    async with asyncio.timeout(20):
        while True:
            response = await client.get(f"/v1/audit?limit=1000&{query}", headers=auditor)
            assert response.status_code == 200, response.text
            records: list[dict[str, Any]] = response.json()["records"]
            if until(records):
                return records
            await asyncio.sleep(0.2)


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "error": {k: v for k, v in body["error"].items() if k != "request_id"}}


async def test_audit_reads_are_scoped_to_the_callers_tenant(
    served: tuple[httpx.AsyncClient, Any],
) -> None:
    """`compliance` in acme reads acme's records only (no filter, or its own tenant);
    `?tenant=globex` is 403 in the contract's shape, and that refused read is itself
    audited once, denied; the `auditor` role (audit:read:all) reads across tenants."""
    client, _ = served
    for tenant in ("acme", "globex"):
        answered = await client.post("/v1/query", json={"question": "expense claims?"},
                                     headers=bearer(tenant=tenant))
        assert answered.status_code == 200
    await _records(client, "", until=lambda rs: {"acme", "globex"} <= {r["tenant"] for r in rs})

    compliance = bearer(sub="carol", tenant="acme", roles=["compliance"])
    own = (await client.get("/v1/audit?limit=1000", headers=compliance)).json()["records"]
    assert own and {r["tenant"] for r in own} == {"acme"}
    named = (await client.get("/v1/audit?tenant=acme", headers=compliance)).json()["records"]
    assert named and {r["tenant"] for r in named} == {"acme"}

    refused = await client.get("/v1/audit?tenant=globex", headers=compliance)
    assert refused.status_code == 403
    body = refused.json()
    assert set(body) == {"error"} and body["error"]["code"] == "forbidden"
    assert body["error"]["request_id"] == refused.headers["x-request-id"]
    request_id = body["error"]["request_id"]
    admin = await client.get("/v1/audit?tenant=globex",
                             headers=bearer(tenant="acme", roles=["admin"]))
    assert admin.status_code == 403  # "*" is not a platform permission

    audited = await _records(client, f"request_id={request_id}", until=bool)
    await asyncio.sleep(1.0)  # a second record would have arrived by now
    audited = await _records(client, f"request_id={request_id}", until=bool)
    assert len(audited) == 1
    assert audited[0]["decision"] == "deny" and audited[0]["status"] == 403
    assert audited[0]["action"] == "audit.read" and audited[0]["tenant"] == "acme"
    assert audited[0]["reason"] == "audit_other_tenant"

    everyone = await _records(client, "", until=bool)
    assert {"acme", "globex"} <= {r["tenant"] for r in everyone}
    globex_only = await _records(client, "tenant=globex", until=bool)
    assert {r["tenant"] for r in globex_only} == {"globex"}


async def test_another_tenants_index_answers_exactly_like_a_missing_one(
    served: tuple[httpx.AsyncClient, Any],
) -> None:
    """acme asking for globex's index gets the same 404 body as for an index that does not
    exist (single and batch); globex gets its own; both get the shared handbook."""
    client, _ = served
    question = {"question": "When are salaries paid?"}
    acme, globex = bearer(tenant="acme"), bearer(tenant="globex")
    foreign = await client.post("/v1/query", json={**question, "index": "globex-payroll"},
                                headers=acme)
    missing = await client.post("/v1/query", json={**question, "index": "globex-payrolz"},
                                headers=acme)
    assert foreign.status_code == missing.status_code == 404
    assert _without_request_id(foreign.json()) == _without_request_id(
        {**missing.json(), "error": {**missing.json()["error"],
                                     "message": missing.json()["error"]["message"].replace(
                                         "globex-payrolz", "globex-payroll")}})
    assert "PAYROLL-77" not in foreign.text
    batch = await client.post("/v1/query/batch",
                              json={"questions": ["a", "b"], "index": "globex-payroll"},
                              headers=bearer(tenant="acme", roles=["batch"]))
    assert batch.status_code == 404 and "PAYROLL-77" not in batch.text

    own = await client.post("/v1/query", json={**question, "index": "globex-payroll"},
                            headers=globex)
    assert own.status_code == 200 and "PAYROLL-77" in own.text
    for headers in (acme, globex):
        shared = await client.post("/v1/query", json={"question": "expense claims?"},
                                   headers=headers)
        assert shared.status_code == 200


async def test_the_index_listing_shows_own_and_shared_narrowed_by_roles(
    served: tuple[httpx.AsyncClient, Any],
) -> None:
    """`Components.indexes_for` (what /v1/models lists) gives acme the shared handbook and
    its own index with owners, never globex's; a role allow-list narrows it, and the
    narrowed role is refused the index it may not use."""
    client, app = served
    components: Components = app.state.components
    acme = Principal(subject="alice", tenant="acme", roles=("reader",))
    listed = {i.name: (i.owner, i.shared) for i in await components.indexes_for(acme, "r1")}
    assert listed == {"default": (None, True), "acme-docs": ("acme", False)}
    narrow = Principal(subject="alice", tenant="acme", roles=("narrow",))
    assert [i.name for i in await components.indexes_for(narrow, "r2")] == ["default"]
    refused = await client.post("/v1/query", json={"question": "q", "index": "acme-docs"},
                                headers=bearer(tenant="acme", roles=["narrow"]))
    assert refused.status_code == 403


async def test_pii_in_source_metadata_is_redacted_and_the_cache_holds_no_raw_text(
    served: tuple[httpx.AsyncClient, Any], serve_settings: Settings,
) -> None:
    """The file name and title of acme's document carry an e-mail address and a phone
    number: the answer (fresh and cached) carries placeholders only, and so do the raw
    values of the answer cache in Redis."""
    client, _ = served
    question = {"question": f"who handles escalations {uuid.uuid4().hex}?", "index": "acme-docs"}
    fresh = await client.post("/v1/query", json=question, headers=bearer(tenant="acme"))
    cached = await client.post("/v1/query", json=question, headers=bearer(tenant="acme"))
    assert fresh.status_code == cached.status_code == 200
    assert (fresh.json()["cached"], cached.json()["cached"]) == (False, True)
    for response in (fresh, cached):
        assert EMAIL not in response.text and PHONE not in response.text
        metadata = response.json()["sources"][0]["metadata"]
        assert metadata["file_name"].startswith("<EMAIL_")  # the whole name is an address
        assert "<EMAIL_1>" in metadata["title"] and "<PHONE_1>" in metadata["title"]
    redis = aioredis.from_url(str(serve_settings.redis_url))
    try:
        values = [await redis.get(key) async for key in redis.scan_iter("ragward:cache:*")]
    finally:
        await redis.aclose()
    assert any(v and b'"file_name":"<EMAIL_' in v for v in values)
    assert not any(v and (EMAIL.encode() in v or PHONE.encode() in v) for v in values)


async def test_a_shared_index_has_one_cache_entry_per_tenant(
    served: tuple[httpx.AsyncClient, Any],
) -> None:
    """The same question on the shared handbook is answered fresh for each tenant the
    first time: the cache key carries the tenant, even for a shared index."""
    client, _ = served
    question = {"question": f"expense claim deadline {uuid.uuid4().hex}?"}
    flags = []
    for tenant in ("acme", "acme", "globex", "globex"):
        response = await client.post("/v1/query", json=question, headers=bearer(tenant=tenant))
        flags.append(response.json()["cached"])
    assert flags == [False, True, False, True]


async def test_audit_fields_hold_a_keyed_hash_and_a_redacted_user_agent(
    served: tuple[httpx.AsyncClient, Any],
) -> None:
    """`question_hmac` is HMAC-SHA256 under RAGWARD_AUDIT_HASH_KEY of the redacted,
    normalised question — not a hash anyone can recompute from a guess — and the stored
    User-Agent is redacted and at most 256 characters."""
    client, _ = served
    question = f"My phone is {CN_MOBILE}; how  do I claim EXPENSES {uuid.uuid4().hex}?"
    agent = f"probe/1.0 ({EMAIL}) " + "x" * 600
    answered = await client.post("/v1/query", json={"question": question},
                                 headers={**bearer(tenant="acme"), "User-Agent": agent})
    assert answered.status_code == 200
    request_id = answered.headers["x-request-id"]
    [record] = await _records(client, f"request_id={request_id}", until=bool)
    redacted = question.replace(CN_MOBILE, "<PHONE_1>")
    expected = hmac.new(HASH_KEY.encode(), normalise_question(redacted).encode(),
                        hashlib.sha256).hexdigest()
    assert record["question_hmac"] == [expected]
    assert "question_sha256" not in record
    assert hashlib.sha256(question.encode()).hexdigest() not in str(record)
    assert record["user_agent"].startswith("probe/1.0 (<EMAIL_1>) ")
    assert len(record["user_agent"]) == 256 and EMAIL not in str(record)


async def test_error_messages_that_echo_input_are_redacted(
    served: tuple[httpx.AsyncClient, Any],
) -> None:
    """An index named like a phone number is echoed in the 404 message as a placeholder."""
    client, _ = served
    response = await client.post("/v1/query", json={"question": "q", "index": CN_MOBILE},
                                 headers=bearer(tenant="acme"))
    assert response.status_code == 404
    assert CN_MOBILE not in response.text and "<PHONE_1>" in response.json()["error"]["message"]


async def test_split_mode_keeps_tenants_apart_through_x_tenant(
    tmp_path: Path, redis_url: str,
) -> None:
    """Gateway → rag_core over HTTP: rag_core learns the tenant from X-Tenant, so acme's
    request for globex's index gets the same 404 as a missing one; the listing over HTTP
    (`Upstream.indexes`, what /v1/models will use) and rag_core's own GET /v1/indexes show
    a tenant only its own and shared indexes; without X-Tenant the trusted caller (the
    gateway's version refresh) sees all; the unauthenticated /ready names shared ones only."""
    core_settings = load_settings(data_dir=tmp_path / "core", jwt_secret=TEST_SECRET,
                                  internal_token=INTERNAL)
    await asyncio.to_thread(_ingest_tenants, core_settings, tmp_path / "docs")
    async with serving(create_rag_core(core_settings)) as core_url:
        settings = gateway_settings(tmp_path, core_url, internal_token=INTERNAL,
                                    redis_url=redis_url)
        async with running_gateway(settings) as gw:
            acme = bearer(tenant="acme")
            foreign = await gw.client.post(
                "/v1/query", json={"question": "salaries?", "index": "globex-payroll"},
                headers=acme)
            missing = await gw.client.post(
                "/v1/query", json={"question": "salaries?", "index": "globex-payrolz"},
                headers=acme)
            own = await gw.client.post(
                "/v1/query", json={"question": "salaries?", "index": "globex-payroll"},
                headers=bearer(tenant="globex"))
            components: Components = gw.app.state.components
            listed = await components.upstream.indexes(tenant="acme", subject="a",
                                                       request_id="r")
        async with httpx.AsyncClient(base_url=core_url) as direct:
            token = {"X-Internal-Token": INTERNAL}
            as_globex = (await direct.get("/v1/indexes",
                                          headers={**token, "X-Tenant": "globex"})).json()
            trusted = (await direct.get("/v1/indexes", headers=token)).json()
            probe = (await direct.get("/ready")).json()  # open to probes: no tenant names
    assert foreign.status_code == missing.status_code == 404
    assert _without_request_id(foreign.json()) == _without_request_id(missing.json())
    assert "PAYROLL-77" not in foreign.text
    assert own.status_code == 200 and "PAYROLL-77" in own.text
    assert sorted(i.name for i in listed) == ["acme-docs", "default"]
    assert sorted(i["name"] for i in as_globex["indexes"]) == ["default", "globex-payroll"]
    assert {i["name"]: i["owner"] for i in as_globex["indexes"]}["globex-payroll"] == "globex"
    assert sorted(i["name"] for i in trusted["indexes"]) == [
        "acme-docs", "default", "globex-payroll"]
    assert list(probe["indexes"]) == ["default"]


async def test_split_mode_carries_a_non_ascii_tenant_intact(tmp_path: Path, redis_url: str) -> None:
    """A tenant named in another script (``租户-α``) reaches rag_core as itself: the gateway
    sends X-Tenant as UTF-8, rag_core reads it back as UTF-8 (not Latin-1 mojibake), so the
    tenant's own index answers and another tenant still gets the 404."""
    tenant = "租户-α"
    core_settings = load_settings(data_dir=tmp_path / "core", jwt_secret=TEST_SECRET,
                                  internal_token=INTERNAL)
    docs = _corpus(tmp_path / "docs", "rules.md", "House rules",
                   "The house rule number is RULE-4242 for every visitor.")
    await asyncio.to_thread(ingest, ingest_config(core_settings), [docs], "house", owner=tenant,
                            show_progress=False)
    async with serving(create_rag_core(core_settings)) as core_url:
        settings = gateway_settings(tmp_path, core_url, internal_token=INTERNAL,
                                    redis_url=redis_url)
        async with running_gateway(settings) as gw:
            body = {"question": "What is the house rule number?", "index": "house"}
            own = await gw.client.post("/v1/query", json=body, headers=bearer(tenant=tenant))
            other = await gw.client.post("/v1/query", json=body, headers=bearer(tenant="acme"))
    assert own.status_code == 200, own.text
    assert "RULE-4242" in own.text
    assert other.status_code == 404
