
"""The rag_core HTTP app: routes, contract shapes, readiness, internal token, headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from rag_core.app import create_app
from rag_core.configuration import build_service, ingest_config
from rag_core.ingest import ingest
from ragward.settings import load_settings

TOKEN = "internal-token-0123456789abcdef"


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("rag-app")
    ingest(ingest_config(load_settings(data_dir=data)), [], None, sample=True, show_progress=False)
    return data


@pytest.fixture(scope="module")
async def client(sample_dir: Path) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    settings = load_settings(data_dir=sample_dir, internal_token=TOKEN)
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


AUTH = {"X-Internal-Token": TOKEN, "X-Tenant": "acme", "X-Subject": "alice"}


async def test_query_answers_in_the_contract_shape(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    """POST /v1/query: answer, sources {id,text,score,metadata}, usage, cached, request_id;
    X-Index-Version and the echoed X-Request-ID as headers."""
    response = await client.post(
        "/v1/query", json={"question": "How do I submit an expense claim?", "top_k": 2},
        headers={**AUTH, "X-Request-ID": "abc-12345"},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"answer", "sources", "usage", "cached", "request_id"}
    assert body["request_id"] == "abc-12345" and response.headers["x-request-id"] == "abc-12345"
    assert body["cached"] is False and "Expensify" in body["answer"]
    assert len(body["sources"]) == 2
    assert set(body["sources"][0]) == {"id", "text", "score", "metadata"}
    assert body["sources"][0]["metadata"]["file_name"] == "en-expense-reimbursement.md"
    assert set(body["usage"]) == {
        "prompt_tokens", "completion_tokens", "embedding_tokens", "total_tokens", "cost_usd",
    }
    indexes = (await client.get("/v1/indexes", headers=AUTH)).json()["indexes"]
    assert response.headers["x-index-version"] == indexes[0]["version"]


async def test_batch_answers_each_question(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    """POST /v1/query/batch: one result per question, in order."""
    questions = ["公司的年假政策是什么?", "How long must my password be?"]
    response = await client.post("/v1/query/batch", json={"questions": questions}, headers=AUTH)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["sources"][0]["metadata"]["file_name"] for r in results] == [
        "zh-annual-leave.md", "en-information-security.md",
    ]
    assert response.headers["x-index-version"]


@pytest.mark.parametrize("headers", [{}, {"X-Internal-Token": "wrong-token"}])
async def test_internal_token_is_required(
    client: AsyncTestClient, headers: dict[str, str]  # type: ignore[type-arg]
) -> None:
    """Without the configured X-Internal-Token every /v1 route is a 401 in the error shape."""
    for method, path in (("POST", "/v1/query"), ("POST", "/v1/query/batch"),
                         ("GET", "/v1/indexes")):
        response = await client.request(method, path, json={"question": "x"}, headers=headers)
        assert response.status_code == 401, path
        error = response.json()["error"]
        assert error["code"] == "invalid_token" and error["request_id"]


async def test_health_and_ready_need_no_token(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    """Probes are open; /ready lists the loaded versions."""
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and "default" in ready.json()["indexes"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"question": ', 400, "bad_request"),
        (b'{"question": ""}', 422, "validation_error"),
        (b'{"question": "x", "top_k": 21}', 422, "validation_error"),
        (b'{"question": "x", "extra": 1}', 422, "validation_error"),
        (b'{"question": "x", "index": "missing"}', 404, "not_found"),
    ],
)
async def test_errors_use_the_contract_shape(
    client: AsyncTestClient, body: bytes, status: int, code: str  # type: ignore[type-arg]
) -> None:
    """Malformed JSON 400, invalid fields 422, unknown index 404 — all as error JSON."""
    response = await client.post(
        "/v1/query", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["request_id"] == response.headers["x-request-id"]


async def test_insane_request_id_is_replaced(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    """A request id with odd characters is not echoed; a fresh one is minted."""
    response = await client.get("/health", headers={"X-Request-ID": "bad id\tx"})
    assert response.headers["x-request-id"] != "bad id\tx"
    assert len(response.headers["x-request-id"]) == 32


async def test_ready_is_503_until_the_index_is_ingested(tmp_path: Path) -> None:
    """/ready answers 503 with the reason until an index exists, then 200 without restart."""
    settings = load_settings(data_dir=tmp_path)
    service = build_service(settings, watch_interval_s=0.05)
    async with AsyncTestClient(app=create_app(settings, service)) as client:
        not_ready = await client.get("/ready")
        assert not_ready.status_code == 503
        assert "ragward ingest" in not_ready.json()["reason"]
        await asyncio.to_thread(ingest, ingest_config(settings), [], None, sample=True,
                                show_progress=False)
        deadline = time.monotonic() + 10
        while (await client.get("/ready")).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        answer = await client.post("/v1/query", json={"question": "出差补贴每天多少钱？"})
        assert answer.status_code == 200  # no internal token configured: open
