"""The gateway in front of a real `rag_core` over HTTP (the split deployment)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rag_core.app import create_app as create_rag_core
from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from ragward.settings import load_settings
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer, gateway_settings, running_gateway, serving

INTERNAL = "internal-token-0123456789-0123456789"


async def test_split_deployment_answers_and_a_reingest_retires_cached_answers(
    tmp_path: Path,
) -> None:
    """Gateway → rag_core with the shared internal token answers from the real index; a
    wrong token is refused by rag_core; a re-ingest changes the index version, so the
    next identical question is answered fresh instead of from the old cache entry."""
    core_settings = load_settings(data_dir=tmp_path / "core", jwt_secret=TEST_SECRET,
                                  internal_token=INTERNAL)
    await asyncio.to_thread(ingest, ingest_config(core_settings), [], sample=True,
                            show_progress=False)
    async with serving(create_rag_core(core_settings)) as core_url:
        settings = gateway_settings(tmp_path, core_url, internal_token=INTERNAL)
        question = {"question": "How do I submit an expense claim?"}
        async with running_gateway(settings) as gw:
            first = (await gw.client.post("/v1/query", json=question, headers=bearer())).json()
            again = (await gw.client.post("/v1/query", json=question, headers=bearer())).json()
            assert first["sources"][0]["metadata"]["file_name"] == "en-expense-reimbursement.md"
            assert (first["cached"], again["cached"]) == (False, True)
            await asyncio.to_thread(ingest, ingest_config(core_settings), [], sample=True,
                                    show_progress=False)
            async with asyncio.timeout(15):  # rag_core notices, the gateway learns the version
                while True:
                    fresh = (await gw.client.post("/v1/query", json=question,
                                                  headers=bearer())).json()
                    if not fresh["cached"]:
                        break
                    await asyncio.sleep(0.5)
        wrong = gateway_settings(tmp_path / "wrong", core_url, internal_token="x" * 36)
        async with running_gateway(wrong) as gw:
            refused = await gw.client.post("/v1/query", json=question, headers=bearer())
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "upstream_error"


async def test_a_vector_store_down_behind_rag_core_is_a_503_not_a_500(tmp_path: Path) -> None:
    """rag_core whose index lives in a Qdrant server that does not answer (a closed port)
    answers the gateway 503; the gateway passes on a 503 ``dependency_unavailable`` in the
    contract's shape, with nothing of the store's address or key in it, and does not count
    it against rag_core: after more of them than the circuit breaker's threshold an index
    in another store on the same rag_core still answers. A chat, whole or streamed, gets
    the same 503 (the store fails before the first byte)."""
    from rag_core.stores import close_clients
    from tests.integration.test_rag_vector_stores import PASSWORD, down_settings

    local = load_settings(data_dir=tmp_path / "core", vector_store="qdrant")
    await asyncio.to_thread(ingest, ingest_config(local), [], sample=True, show_progress=False)
    await asyncio.to_thread(ingest, ingest_config(local), [], "embedded", sample=True,
                            show_progress=False, store="embedded")
    close_clients()  # Qdrant's local mode: release the directory's lock
    core_settings = down_settings("qdrant", tmp_path / "core")
    question = {"question": "How do I submit an expense claim?"}
    try:
        async with serving(create_rag_core(core_settings)) as core_url, \
                running_gateway(gateway_settings(tmp_path, core_url)) as gw:
            answers = [await gw.client.post("/v1/query", json=question, headers=bearer())
                       for _ in range(core_settings.circuit_failure_threshold + 1)]
            other = await gw.client.post("/v1/query", json={**question, "index": "embedded"},
                                         headers=bearer())
            chats = [await gw.client.post("/v1/chat/completions", headers=bearer(), json={
                "model": "default", "stream": stream,
                "messages": [{"role": "user", "content": question["question"]}]})
                for stream in (False, True)]
    finally:
        close_clients()
    for answer, shape in [*((a, {"code", "message", "request_id"}) for a in answers),
                          # the OpenAI-compatible route answers in OpenAI's error shape
                          *((c, {"code", "message", "type", "param"}) for c in chats)]:
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert set(error) == shape
        assert error["code"] == "dependency_unavailable"
        assert PASSWORD not in answer.text and "127.0.0.1" not in answer.text
    assert other.status_code == 200, other.text
