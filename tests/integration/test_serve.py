"""`ragward serve`: the whole system in one process, on the embedded default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.serve import create_serve_app
from ragward.settings import Settings, load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, serving


@pytest.fixture(scope="module")
def serve_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("serve") / "data"
    settings = load_settings(data_dir=data, jwt_secret=TEST_SECRET)
    ingest(ingest_config(settings), [], sample=True, show_progress=False)
    return settings


@pytest.fixture(scope="module")
async def served(serve_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_serve_app(serve_settings)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


async def _ask(client: httpx.AsyncClient, question: str) -> dict[str, object]:
    response = await client.post("/v1/query", json={"question": question},
                                 headers=bearer(tenant="demo", roles=["reader"]))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_serve_answers_real_questions_in_both_languages(served: httpx.AsyncClient) -> None:
    """The bundled handbook answers Chinese and English questions with the right documents
    first, through the full gateway path."""
    leave = await _ask(served, "公司的年假政策是什么?")
    expense = await _ask(served, "How do I submit an expense claim?")
    assert leave["sources"][0]["metadata"]["file_name"] == "zh-annual-leave.md"  # type: ignore[index]
    assert "年假" in str(leave["answer"])
    assert expense["sources"][0]["metadata"]["file_name"] == (  # type: ignore[index]
        "en-expense-reimbursement.md")
    assert "Expensify" in str(expense["answer"])
    assert expense["usage"]["total_tokens"] > 0  # type: ignore[index]


async def test_audit_api_is_for_compliance_and_reads_are_audited(
    served: httpx.AsyncClient,
) -> None:
    """`reader` gets 403 on /v1/audit; `compliance` gets records, newest first, with a
    cursor; and that read itself appears in the audit log."""
    await _ask(served, "How many days of annual leave do I get?")
    denied = await served.get("/v1/audit", headers=bearer(roles=["reader"]))
    assert denied.status_code == 403
    compliance = bearer(sub="auditor", tenant="demo", roles=["compliance"])
    async with asyncio.timeout(10):
        while True:
            page = (await served.get("/v1/audit?limit=50", headers=compliance)).json()
            if any(r["action"] == "query" for r in page["records"]):
                break
            await asyncio.sleep(0.1)
    timestamps = [r["ts"] for r in page["records"]]
    assert timestamps == sorted(timestamps, reverse=True)
    async with asyncio.timeout(10):
        while True:
            page = (await served.get("/v1/audit?subject=auditor", headers=compliance)).json()
            reads = [r for r in page["records"] if r["action"] == "audit.read"]
            if reads:
                break
            await asyncio.sleep(0.1)
    assert reads[0]["status"] == 200 and reads[0]["roles"] == ["compliance"]
    bad = await served.get("/v1/audit?since=yesterday", headers=compliance)
    assert bad.status_code == 422 and "since" in bad.json()["error"]["message"]


async def test_dashboard_and_metrics_are_served(served: httpx.AsyncClient) -> None:
    """The live dashboard page and one Prometheus exposition with gateway and consumer
    metrics are served by the same process."""
    await _ask(served, "What is the remote work policy?")
    page = await served.get("/dashboard")
    assert (page.status_code == 200 and "<svg" in page.text.lower()) or "chart" in page.text
    async with asyncio.timeout(10):
        while True:
            metrics = (await served.get("/metrics")).text
            if 'ragward_requests_total{' in metrics:
                break
            await asyncio.sleep(0.1)
    assert "ragward_gateway_requests_total" in metrics
    assert 'route="/v1/query"' in metrics
    ready = (await served.get("/ready")).json()
    assert ready["status"] == "ok"
