"""One index life cycle on every vector store: embedded, real PostgreSQL + pgvector, Qdrant.

pgvector comes from the ``pgserver`` wheel (PostgreSQL 16 with the extension built
in; Debian ships no pgvector package), started once for this module in a
temporary directory. Qdrant runs in its local mode (the same client API as a
server, on files under the data directory).
"""

from __future__ import annotations

import json
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from litestar.testing import AsyncTestClient
from llama_index.core.schema import TextNode
from psycopg import sql

from rag_core.app import create_app
from rag_core.backends import build_local_backend
from rag_core.configuration import build_service, ingest_config, store_config
from rag_core.ingest import delete, ingest, publish
from rag_core.schemas import QueryRequest
from rag_core.store import load_snapshot, read_current, read_manifest, version_dir
from rag_core.stores import _qdrant_client, close_clients, open_dense
from rag_core.usage import UsageTracker
from ragward.errors import DependencyUnavailable, NotFound
from ragward.settings import Settings, load_settings

STORES = ("embedded", "pgvector", "qdrant")
NEW_FACT = "The office aquarium is cleaned by Zorblax Lumenfeld every Tuesday at 07:15."


@pytest.fixture(scope="module")
def pgvector_server() -> Iterator[str]:
    workdir = tempfile.mkdtemp(prefix="ragward-pgvector-")
    with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR under root
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(workdir, cleanup_mode="delete")
    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture
def pgvector_dsn(pgvector_server: str) -> str:
    """A database of its own for each test, with the vector extension."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pgvector_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = pgvector_server.replace("/postgres?", f"/{name}?", 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return dsn


@pytest.fixture(autouse=True)
def _close_store_clients() -> Iterator[None]:
    yield
    close_clients()


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    kind = request.param
    extra: dict[str, Any] = {}
    if kind == "pgvector":
        extra["pgvector_dsn"] = request.getfixturevalue("pgvector_dsn")
    return load_settings(data_dir=tmp_path, vector_store=kind, retrieval="hybrid", **extra)


def collections(settings: Settings) -> set[str]:
    """The vector tables / collections that exist in the settings' store right now."""
    config = store_config(settings)
    if config.kind == "pgvector":
        assert config.pgvector_dsn
        with psycopg.connect(config.pgvector_dsn) as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'data_rw_%'"
            ).fetchall()
        return {str(r[0]).removeprefix("data_") for r in rows}
    if config.kind == "qdrant":
        client = _qdrant_client(None, None, str(config.qdrant_path))
        return {c.name for c in client.get_collections().collections}
    return set()


def collection_of(settings: Settings, index: str) -> str | None:
    version = read_current(settings.indexes_dir, index)
    assert version
    manifest = read_manifest(version_dir(settings.indexes_dir, index, version))
    assert manifest["store"] == settings.vector_store
    return manifest["collection"]


async def ask(settings: Settings, question: str, index: str, tenant: str) -> list[str]:
    service = build_service(settings)
    await service.start()
    try:
        result = await service.query(
            QueryRequest(question=question, index=index, top_k=3),
            tenant=tenant, subject="s", request_id="r",
        )
    finally:
        await service.stop()
    return [str(s.metadata.get("file_name")) for s in result.sources]


async def test_ingest_then_query_answers_from_the_store(settings: Settings) -> None:
    """The sample corpus ingested into the store answers a question with its own document,
    and its vectors are in a table / collection of their own (none left elsewhere)."""
    result = ingest(ingest_config(settings), [], "handbook", sample=True, owner="acme",
                    show_progress=False)
    files = await ask(settings, "How do I submit an expense claim?", "handbook", "acme")
    assert files[0] == "en-expense-reimbursement.md"
    files = await ask(settings, "出差住宿标准是多少?", "handbook", "acme")
    assert files[0] == "zh-business-travel.md"
    collection = collection_of(settings, "handbook")
    if settings.vector_store == "embedded":
        assert collection is None
    else:
        assert collections(settings) == {collection}
        assert result.chunks > 50


async def test_reingest_switches_versions_and_drops_pruned_vectors(settings: Settings) -> None:
    """A running service moves to a re-ingested version at once (a fact only the new version
    has is found); after a third ingest the first version's vectors are gone from the store
    and only the two kept versions' remain."""
    ingest(ingest_config(settings), [], "handbook", sample=True, owner="acme", show_progress=False)
    first = collection_of(settings, "handbook")
    service = build_service(settings, watch_interval_s=3600)
    await service.start()
    extra = settings.data_dir / "extra"
    extra.mkdir()
    (extra / "aquarium.md").write_text(f"# Aquarium\n\n{NEW_FACT}\n", encoding="utf-8")
    try:
        question = QueryRequest(question="Who cleans the office aquarium?", index="handbook")
        before, v1 = await service.query_with_version(question, tenant="acme", subject="s",
                                                       request_id="r")
        assert all("Zorblax" not in s.text for s in before.sources)
        ingest(ingest_config(settings), [extra], "handbook", sample=True, owner="acme",
               show_progress=False)
        second = collection_of(settings, "handbook")
        await service.refresh()
        after, v2 = await service.query_with_version(question, tenant="acme", subject="s",
                                                      request_id="r")
        assert v2 != v1
        assert "Zorblax" in after.sources[0].text
    finally:
        await service.stop()
    ingest(ingest_config(settings), [extra], "handbook", sample=True, owner="acme",
           show_progress=False)
    third = collection_of(settings, "handbook")
    if settings.vector_store != "embedded":
        assert len({first, second, third}) == 3
        assert collections(settings) == {second, third}


async def test_tenant_indexes_stay_apart(settings: Settings) -> None:
    """Two tenants' indexes in the same store: each finds its own fact, neither can query
    the other's index (answered like a missing one), and they share no table."""
    a_dir, b_dir = settings.data_dir / "a", settings.data_dir / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    (a_dir / "a.md").write_text("# Alpha\n\nThe alpha vault code is kept by Quintessa Marlowe.\n")
    (b_dir / "b.md").write_text("# Beta\n\nThe beta vault code is kept by Bartholomew Okonjo.\n")
    ingest(ingest_config(settings), [a_dir], "vault-a", owner="tenant-a", show_progress=False)
    ingest(ingest_config(settings), [b_dir], "vault-b", owner="tenant-b", show_progress=False)
    assert await ask(settings, "Who keeps the vault code?", "vault-a", "tenant-a") == ["a.md"]
    assert await ask(settings, "Who keeps the vault code?", "vault-b", "tenant-b") == ["b.md"]
    with pytest.raises(NotFound) as foreign:
        await ask(settings, "Who keeps the vault code?", "vault-b", "tenant-a")
    with pytest.raises(NotFound) as missing:
        await ask(settings, "Who keeps the vault code?", "vault-c", "tenant-a")
    assert str(foreign.value).replace("vault-b", "X") == str(missing.value).replace("vault-c", "X")
    if settings.vector_store != "embedded":
        assert collection_of(settings, "vault-a") != collection_of(settings, "vault-b")


async def test_delete_removes_the_index_and_its_vectors(settings: Settings) -> None:
    """Deleting an index drops every version's vectors from the store and a running
    service stops answering from it; another tenant cannot delete it."""
    ingest(ingest_config(settings), [], "handbook", sample=True, owner="acme", show_progress=False)
    ingest(ingest_config(settings), [], "handbook", sample=True, owner="acme", show_progress=False)
    service = build_service(settings, watch_interval_s=3600)
    await service.start()
    try:
        with pytest.raises(ValueError, match="owned by tenant 'acme'"):
            delete(ingest_config(settings), "handbook", owner="intruder")
        assert [i.name for i in service.indexes("acme")] == ["handbook"]
        removed = delete(ingest_config(settings), "handbook", owner="acme")
        assert len(removed) == 2
        assert not (settings.indexes_dir / "handbook").exists()
        assert collections(settings) == set()
        await service.refresh()
        assert service.indexes("acme") == []
        with pytest.raises(NotFound):
            await service.query(QueryRequest(question="expense claim", index="handbook"),
                                tenant="acme", subject="s", request_id="r")
    finally:
        await service.stop()
    with pytest.raises(NotFound):
        delete(ingest_config(settings), "handbook", owner="acme")


def test_cli_delete_names_the_owner_and_removes_the_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ragward ingest --delete`: the wrong tenant is refused with exit 2 and the owner
    named; the owner deletes it (exit 0); deleting again says it does not exist (exit 2)."""
    from ragward.cli import build_parser

    settings = load_settings(data_dir=tmp_path)
    ingest(ingest_config(settings), [], "handbook", sample=True, owner="acme", show_progress=False)
    parser = build_parser()

    def run(*argv: str) -> int:
        from rag_core.ingest_cli import main

        return main(settings, parser.parse_args(["ingest", *argv]))

    assert run("--delete", "--index", "handbook", "--tenant", "intruder") == 2
    assert "owned by tenant 'acme'" in capsys.readouterr().err
    assert run("--delete", "--index", "handbook") == 2
    assert "--tenant T or --shared" in capsys.readouterr().err
    assert run("--delete", "--index", "handbook", "--tenant", "acme") == 0
    assert "deleted index 'handbook' and its vectors (1 version(s))" in capsys.readouterr().out
    assert read_current(settings.indexes_dir, "handbook") is None
    assert run("--delete", "--index", "handbook", "--tenant", "acme") == 2
    assert "does not exist" in capsys.readouterr().err


def test_pgvector_bulk_load_builds_hnsw_once_the_rows_are_in(pgvector_dsn: str,
                                                              tmp_path: Path) -> None:
    """A 512-d version (USE-m3's width) is written without an index and gets its HNSW
    index in one pass before the switch, under LlamaIndex's name: it is there before any
    reader opened the table, and a nearest-neighbour query through it finds each row."""
    settings = load_settings(data_dir=tmp_path, vector_store="pgvector",
                             pgvector_dsn=pgvector_dsn)
    backend = build_local_backend(UsageTracker(), embedding="hashed")
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((60, 512)).astype(np.float32)
    nodes = [TextNode(text=f"row {i}", id_=str(uuid.UUID(int=i + 1)),
                      embedding=matrix[i].tolist(), metadata={"file_name": f"d{i}.md"})
             for i in range(len(matrix))]
    publish(ingest_config(settings), "wide", nodes, backend, {"embedding": backend.embedding_id})
    table = f"data_{collection_of(settings, 'wide')}"
    with psycopg.connect(pgvector_dsn) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)
        ).fetchall()
    # PostgreSQL cuts names at 63 bytes, LlamaIndex's "IF NOT EXISTS" the same way
    hnsw = [name for name, definition in indexes if "USING hnsw" in definition]
    assert hnsw == [f"{table}_embedding_idx"[:63]], indexes
    snapshot = load_snapshot(settings.indexes_dir, "wide", backend.embed_model,
                             backend.tracker.callback_manager,
                             stores=store_config(settings))
    assert [snapshot.top_k(matrix[i], 1)[0][0] for i in (0, 17, 59)] == [0, 17, 59]


def _rows(count: int, dim: int, seed: int) -> tuple[np.ndarray, list[TextNode]]:
    """``count`` nodes with random ``dim``-wide vectors, ids and metadata of their own."""
    matrix = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    nodes = [TextNode(text=f"row {i} 第{i}行", id_=str(uuid.UUID(int=seed * 10**6 + i + 1)),
                      embedding=matrix[i].tolist(),
                      metadata={"file_name": f"d{i}.md", "part": i})
             for i in range(count)]
    return matrix, nodes


# VectorStoreIndex hands the store 2,048 nodes per add: three batches, the last partial
MULTI_BATCH = 2 * 2048 + 7


def test_pgvector_multi_batch_publish_keeps_every_row(pgvector_dsn: str,
                                                      tmp_path: Path) -> None:
    """A publish spanning three COPY batches writes every row once, in LlamaIndex's schema:
    each row's text, metadata and vector are the node's (LlamaIndex's own reader rebuilds
    the nodes from them), and a nearest-neighbour query finds rows of every batch."""
    settings = load_settings(data_dir=tmp_path, vector_store="pgvector",
                             pgvector_dsn=pgvector_dsn)
    backend = build_local_backend(UsageTracker(), embedding="hashed")
    matrix, nodes = _rows(MULTI_BATCH, 64, seed=5)
    publish(ingest_config(settings), "bulk", nodes, backend, {"embedding": backend.embedding_id})
    table = f"data_{collection_of(settings, 'bulk')}"
    with psycopg.connect(pgvector_dsn) as conn:
        rows = conn.execute(sql.SQL("SELECT node_id, text, embedding::text FROM {}").format(
            sql.Identifier(table))).fetchall()
    assert len(rows) == MULTI_BATCH
    by_id = {node_id: (text, vector) for node_id, text, vector in rows}
    assert set(by_id) == {n.node_id for n in nodes}
    for i in (0, 2047, 2048, 4095, 4096, MULTI_BATCH - 1):
        text, vector = by_id[nodes[i].node_id]
        assert text == nodes[i].text
        assert np.array_equal(np.array(json.loads(vector), dtype=np.float32), matrix[i])
    snapshot = load_snapshot(settings.indexes_dir, "bulk", backend.embed_model,
                             backend.tracker.callback_manager, stores=store_config(settings))
    probes = (0, 2047, 2048, 4096, MULTI_BATCH - 1)
    assert [snapshot.top_k(matrix[i], 1)[0][0] for i in probes] == list(probes)
    version = read_current(settings.indexes_dir, "bulk")
    assert version
    vdir = version_dir(settings.indexes_dir, "bulk", version)
    reader, _, _ = open_dense(vdir, read_manifest(vdir), store_config(settings))
    read = {n.node_id: n for n in reader.get_nodes(node_ids=[nodes[1].node_id,
                                                             nodes[4100].node_id])}
    assert read[nodes[4100].node_id].get_content() == nodes[4100].text
    assert read[nodes[4100].node_id].metadata == {"file_name": "d4100.md", "part": 4100}
    assert read[nodes[1].node_id].metadata["part"] == 1


def test_pgvector_failed_bulk_load_keeps_the_current_version(pgvector_dsn: str,
                                                             tmp_path: Path) -> None:
    """A re-ingest whose third batch the database refuses (a vector of the wrong width),
    after two batches were committed, publishes nothing: ``CURRENT`` still names the first
    version, which answers, and the half-loaded table is dropped."""
    settings = load_settings(data_dir=tmp_path, vector_store="pgvector",
                             pgvector_dsn=pgvector_dsn)
    backend = build_local_backend(UsageTracker(), embedding="hashed")
    first_matrix, first = _rows(12, 64, seed=1)
    publish(ingest_config(settings), "kb", first, backend, {"embedding": backend.embedding_id})
    before = read_current(settings.indexes_dir, "kb")
    _, second = _rows(MULTI_BATCH, 64, seed=2)
    second[-1].embedding = second[-1].embedding[:-1]  # type: ignore[index]
    with pytest.raises(DependencyUnavailable) as refused:
        publish(ingest_config(settings), "kb", second, backend,
                {"embedding": backend.embedding_id})
    # the domain error the CLI prints and HTTP maps, naming the store and the error type
    # only: the driver's message (here the SQL statement) stays behind
    assert refused.value.message == "the pgvector store failed (DataException)"
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert read_current(settings.indexes_dir, "kb") == before
    assert collections(settings) == {collection_of(settings, "kb")}
    snapshot = load_snapshot(settings.indexes_dir, "kb", backend.embed_model,
                             backend.tracker.callback_manager, stores=store_config(settings))
    assert snapshot.top_k(first_matrix[7], 1)[0][0] == 7


# -- a store that does not answer ------------------------------------------------
PASSWORD = "s3cret-Pa55-9d1e"
UNREACHABLE = {"pgvector": "OperationalError", "qdrant": "ResponseHandlingException"}


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def live_settings(kind: str, data_dir: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings whose ``kind`` store answers: the test's pgvector database, Qdrant local mode."""
    extra = {"pgvector_dsn": request.getfixturevalue("pgvector_dsn")} if kind == "pgvector" else {}
    return load_settings(data_dir=data_dir, vector_store=kind, **extra)


def down_settings(kind: str, data_dir: Path) -> Settings:
    """The same data directory with the ``kind`` store on a closed port: a DSN with a
    password, a Qdrant server URL with an API key."""
    address = f"127.0.0.1:{closed_port()}"
    if kind == "pgvector":
        return load_settings(data_dir=data_dir, vector_store=kind,
                             pgvector_dsn=f"postgresql://rag:{PASSWORD}@{address}/rag")
    return load_settings(data_dir=data_dir, vector_store=kind, qdrant_url=f"https://{address}",
                         qdrant_api_key=PASSWORD)


def run_ingest_cli(settings: Settings, *argv: str) -> int:
    from rag_core.ingest_cli import main
    from ragward.cli import build_parser

    return main(settings, build_parser().parse_args(["ingest", *argv]))


def assert_one_clean_line(kind: str, captured: pytest.CaptureResult[str]) -> None:
    """The CLI said, once, which store failed and how (the exception type), and nothing
    it printed or logged carries a traceback or the store's credentials."""
    lines = [line for line in captured.err.splitlines() if line.startswith("ragward ingest:")]
    assert lines == [f"ragward ingest: the {kind} store is unavailable ({UNREACHABLE[kind]})"]
    everything = captured.out + captured.err
    assert "Traceback" not in everything
    assert PASSWORD not in everything


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
def test_cli_ingest_into_an_unreachable_store_says_so_in_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ragward ingest` with the pgvector DSN / Qdrant URL on a closed port exits 1 with
    one line naming the store and the error type (no traceback, no password or key),
    and publishes nothing."""
    settings = down_settings(kind, tmp_path)
    assert run_ingest_cli(settings, "--sample", "--shared", "--index", "kb") == 1
    assert_one_clean_line(kind, capsys.readouterr())
    assert read_current(settings.indexes_dir, "kb") is None


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
def test_cli_delete_with_the_store_down_changes_nothing(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ragward ingest --delete` while the index's store does not answer exits 1 in one
    line and removes nothing: CURRENT and the vectors stay, so the same command succeeds
    once the store is back (instead of the files going and the table staying behind)."""
    live = live_settings(kind, tmp_path, request)
    ingest(ingest_config(live), [], "kb", sample=True, show_progress=False)
    before, table = read_current(live.indexes_dir, "kb"), collection_of(live, "kb")
    capsys.readouterr()
    assert run_ingest_cli(down_settings(kind, tmp_path), "--delete", "--index", "kb",
                          "--shared") == 1
    assert_one_clean_line(kind, capsys.readouterr())
    assert read_current(live.indexes_dir, "kb") == before
    assert collections(live) == {table}
    assert run_ingest_cli(live, "--delete", "--index", "kb", "--shared") == 0
    assert collections(live) == set()


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
async def test_query_on_an_index_whose_store_is_down_answers_503(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """rag_core started with the index's store on a closed port answers a query and a chat
    on it 503 ``dependency_unavailable`` in the contract's shape, naming the store and the
    error type only (pgvector fails at the search, Qdrant already at loading the index:
    either way not a 500 and not "does not exist"), and /ready says why. The logs name
    the store and the error type; no traceback, no driver message, no password."""
    live = live_settings(kind, tmp_path, request)
    ingest(ingest_config(live), [], "default", sample=True, show_progress=False)
    close_clients()  # Qdrant's local mode: release the directory's lock
    message = f"the {kind} store is unavailable ({UNREACHABLE[kind]})"
    async with AsyncTestClient(app=create_app(down_settings(kind, tmp_path))) as client:
        answer = await client.post("/v1/query", json={"question": "How do I submit an expense "
                                                      "claim?", "index": "default"})
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"error": {"code": "dependency_unavailable", "message": message,
                                           "request_id": answer.headers["x-request-id"]}}
        assert PASSWORD not in answer.text
        chat = await client.post("/v1/chat/stream", json={
            "index": "default", "messages": [{"role": "user", "content": "expense claim?"}]})
        events = chat.text if chat.status_code == 200 else ""
        assert (chat.status_code == 503 and chat.json()["error"]["message"] == message) or (
            '"status":503' in events.replace(" ", "") and message in events), chat.text
        if kind == "qdrant":  # not loaded at all: /ready names the reason
            ready = await client.get("/ready")
            assert ready.status_code == 503 and message in ready.text
    # the service's log lines (structlog writes to stdout here) and the libraries' records;
    # stderr gets pgserver's own thread's complaints about pytest's closed streams
    logged = capsys.readouterr().out + caplog.text
    assert "vector_store_failed" in logged and UNREACHABLE[kind] in logged
    for leak in ("Traceback", "Connection refused", PASSWORD):
        assert leak not in logged
