"""Re-ingest under load: atomic versions, hot swap, no failed query."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import pytest

from rag_core.configuration import build_service, ingest_config
from rag_core.ingest import ingest
from rag_core.ingest_cli import main as ingest_main
from rag_core.schemas import QueryRequest
from rag_core.store import VERSIONS, read_current
from ragward.settings import Settings, load_settings

NEW_FACT = "The office aquarium is cleaned by Zorblax Lumenfeld every Tuesday at 07:15."


async def test_reingest_while_querying_fails_nothing_and_serves_the_new_version(
    tmp_path: Path,
) -> None:
    """Queries run non-stop while two re-ingests publish new versions: none fails, each
    answer comes from a complete version, and afterwards the newest version is served."""
    settings = load_settings(data_dir=tmp_path)
    first = ingest(ingest_config(settings), [], None, sample=True, show_progress=False)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "aquarium.md").write_text(f"# Aquarium\n\n{NEW_FACT}\n", encoding="utf-8")

    service = build_service(settings, watch_interval_s=0.05)
    await service.start()
    errors: list[BaseException] = []
    versions_seen: set[str] = set()
    answered = 0
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        nonlocal answered
        questions = ["How do I submit an expense claim?", "公司的年假政策是什么?"]
        while not stop.is_set():
            try:
                result, version = await service.query_with_version(
                    QueryRequest(question=questions[n % 2]), tenant="t", subject="s",
                    request_id=f"w{n}",
                )
                assert result.sources, "an answer without sources"
                versions_seen.add(version)
                answered += 1
            except BaseException as exc:  # every failure is the finding
                errors.append(exc)
            await asyncio.sleep(0)

    workers = [asyncio.create_task(worker(n)) for n in range(4)]
    try:
        second = await asyncio.to_thread(
            ingest, ingest_config(settings), [], None, sample=True, show_progress=False
        )
        third = await asyncio.to_thread(
            ingest, ingest_config(settings), [extra], None, sample=True, show_progress=False
        )
        deadline = time.monotonic() + 10
        while service.index_version("default") != third.version:
            assert time.monotonic() < deadline, "new version never served"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # some queries on the new version too
    finally:
        stop.set()
        await asyncio.gather(*workers)
    try:
        assert errors == []
        assert answered > 20
        assert len({first.version, second.version, third.version}) == 3
        assert third.version in versions_seen and first.version in versions_seen
        fresh = await service.query(
            QueryRequest(question="Who cleans the office aquarium?"), tenant="t", subject="s",
            request_id="after",
        )
        assert fresh.sources[0].metadata["file_name"] == "aquarium.md"
        assert "Zorblax" in fresh.answer
        assert service.indexes()[0].documents == 17
    finally:
        await service.stop()
    kept = sorted(p.name for p in (settings.indexes_dir / "default" / VERSIONS).iterdir())
    assert kept == [second.version, third.version]  # the last two, no temporary leftovers
    assert read_current(settings.indexes_dir, "default") == third.version


async def test_a_new_named_index_is_discovered(tmp_path: Path) -> None:
    """An index ingested after start-up is found by name without a restart."""
    settings = load_settings(data_dir=tmp_path)
    ingest(ingest_config(settings), [], None, sample=True, show_progress=False)
    service = build_service(settings, watch_interval_s=30)  # the watcher won't help here
    await service.start()
    try:
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "faq.txt").write_text(NEW_FACT, encoding="utf-8")
        result = await asyncio.to_thread(ingest, ingest_config(settings), [docs], "faq",
                                         show_progress=False)
        answer = await service.query(
            QueryRequest(question="aquarium cleaning", index="faq"), tenant="t", subject="s",
            request_id="r",
        )
        assert answer.sources[0].metadata["file_name"] == "faq.txt"
        assert service.index_version("faq") == result.version
        assert [i.name for i in service.indexes()] == ["default", "faq"]
    finally:
        await service.stop()


@pytest.mark.parametrize("tenant", ["", "acme\r\nX-Tenant: other", "a\u202ebc", "t" * 129])
def test_ingest_refuses_an_owner_no_token_could_name(
    tmp_path: Path, tenant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ragward ingest --tenant`` applies the tokens' identity rule (ragward.identity):
    an empty, over-long or non-printable owner is exit 2 with one line, and no index."""
    settings = Settings(data_dir=tmp_path / "data")
    doc = tmp_path / "doc.txt"
    doc.write_text("the handbook says hello")
    args = argparse.Namespace(paths=[str(doc)], index="owned", tenant=tenant, shared=False,
                              sample=False, fail_fast=False)
    assert ingest_main(settings, args) == 2
    assert "--tenant must be 1-128 printable characters" in capsys.readouterr().err
    assert not (settings.indexes_dir / "owned").exists()
