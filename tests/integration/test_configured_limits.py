"""The question and batch limits are the configured ones (issue 16): raising
``RAGWARD_MAX_QUESTION_CHARS`` / ``RAGWARD_MAX_BATCH`` lets longer questions and larger
batches through, in the gateway and in rag_core alike; lowering them refuses with a 422
naming the field. (The wire shapes hard-coded 8,000 characters and 32 questions.)"""

from __future__ import annotations

from pathlib import Path

import httpx

from rag_core.app import create_app as create_rag_core
from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.settings import load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway, serving
from tests.upstream_server import UpstreamServer

LONG = "How do I submit an expense claim? " + "x" * 9_000  # over the old 8,000 cap


async def test_the_gateway_follows_the_configured_limits(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    """Raised limits: a 9,000-character question and a batch of 40 are answered. Lowered
    ones: 100 characters and 2 questions are the most, with the field named."""
    raised = gateway_settings(tmp_path / "raised", upstream.url, max_question_chars=10_000,
                              max_batch=40, quota_rpm=1_000_000)
    async with running_gateway(raised) as gw:
        one = await gw.client.post("/v1/query", json={"question": LONG},
                                   headers=bearer(roles=["batch"]))
        many = await gw.client.post("/v1/query/batch", json={"questions": ["q?"] * 40},
                                    headers=bearer(roles=["batch"]))
    assert one.status_code == 200, one.text
    assert many.status_code == 200, many.text
    assert len(many.json()["results"]) == 40

    lowered = gateway_settings(tmp_path / "lowered", upstream.url, max_question_chars=100,
                               max_batch=2)
    async with running_gateway(lowered) as gw:
        long = await gw.client.post("/v1/query", json={"question": "q" * 101},
                                    headers=bearer(roles=["batch"]))
        big = await gw.client.post("/v1/query/batch", json={"questions": ["q?"] * 3},
                                   headers=bearer(roles=["batch"]))
    assert long.status_code == 422 and "question" in long.json()["error"]["message"]
    assert big.status_code == 422 and "questions" in big.json()["error"]["message"]


async def test_rag_core_follows_the_configured_limits(tmp_path: Path) -> None:
    """rag_core alone applies its own settings the same way: raised, the long question is
    answered; at the default (8,000) it is a 422 naming the field, never a 5xx."""
    for chars, expected in ((10_000, 200), (8_000, 422)):
        settings = load_settings(data_dir=tmp_path / str(chars), jwt_secret=TEST_SECRET,
                                 max_question_chars=chars)
        ingest(ingest_config(settings), [], sample=True, show_progress=False)
        async with serving(create_rag_core(settings)) as url, httpx.AsyncClient(
                base_url=url, timeout=30) as client:
            answer = await client.post("/v1/query", json={"question": LONG})
        assert answer.status_code == expected, answer.text
        if expected == 422:
            assert "question" in answer.json()["error"]["message"]
