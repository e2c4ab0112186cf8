"""Retrieval latency and ingest throughput per vector store, at 1,000 and 100,000 chunks.

    .venv/bin/python -m bench.retrieval [--sizes 1000,10000,100000] [--queries 200]
                                        [--stores embedded,pgvector,qdrant]
                                        [--max-seconds 2400] [--case-seconds 600]

A generated corpus (seeded: English and Chinese sentences over a fixed
vocabulary) with 512-dimensional vectors — USE multilingual v3's size — made
from the text by a seeded random projection, so every store gets exactly the
same vectors and the numbers measure the store, not the model. For each store
and size it publishes one index version through ``rag_core.ingest.publish``
(vectors into the store, docstore, BM25 and the atomic switch: what ``ragward
ingest`` does after embedding) and reports chunks/s; then loads the version as
a service does and times, per query, the dense top-10 (``IndexSnapshot.top_k``),
BM25 alone and the hybrid fusion. The baseline, measured in the same run on the
same vectors, is a bare numpy matrix product with ``argpartition``: the floor
any store is compared to. The embedding model's own cost is measured apart
(chunks/s of hashed, USE-m3 and the default USE-m3 + bge on the same text, and
the p50 of embedding one question), since it dominates ingest.

pgvector runs in a ``pgserver`` PostgreSQL (HNSW, m=16, ef_construction=64,
ef_search=40, built once after the rows are in); Qdrant in local mode (exact
search in-process). Sizes run in ascending order; a store whose measured ingest
rate projects its next size past ``--case-seconds`` stops there (the largest
size that fits is the one reported), and nothing starts after ``--max-seconds``:
what did not run is printed as skipped, with why.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.schema import TextNode

from rag_core.backends import build_local_backend
from rag_core.configuration import ingest_config, store_config
from rag_core.fusion import reciprocal_rank_fusion
from rag_core.ingest import publish
from rag_core.store import load_snapshot
from rag_core.stores import close_clients
from rag_core.usage import UsageTracker
from ragward.settings import load_settings

DIM = 512
TOP_K = 10
EN_WORDS = str.split(
    "leave policy expense claim travel hotel flight receipt manager approval payroll laptop "
    "password security incident phishing training onboarding probation review rating goal "
    "promotion benefits pension insurance dental remote office stipend internet vpn country "
    "tax calendar deadline report budget invoice vendor contract renewal audit compliance"
)
ZH_WORDS = str.split(
    "年假 报销 出差 酒店 机票 发票 审批 工资 电脑 密码 安全 事件 培训 入职 试用期 绩效 "
    "考核 晋升 福利 保险 体检 远程 办公 补贴 网络 合同 预算 供应商 审计 合规 部门 系统"
)


def corpus(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    texts = []
    for i in range(n):
        if i % 3 == 2:
            words = rnd.choices(ZH_WORDS, k=18)
            texts.append("".join(words) + f"编号{i}。")
        else:
            words = rnd.choices(EN_WORDS, k=24)
            texts.append(" ".join(words) + f" ref{i}.")
    return texts


def vectors(texts: list[str], seed: int = 11) -> np.ndarray:
    """Seeded unit vectors per text: a random projection of its word counts."""
    rnd = np.random.default_rng(seed)
    vocab = {w: i for i, w in enumerate(EN_WORDS + ZH_WORDS)}
    projection = rnd.standard_normal((len(vocab), DIM)).astype(np.float32)
    counts = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for row, text in enumerate(texts):
        for word, col in vocab.items():
            if word in text:
                counts[row, col] = text.count(word)
    rows = counts @ projection + 0.05 * rnd.standard_normal((len(texts), DIM)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    fn()  # warm
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), percentile(samples, 0.99)


EMBEDDINGS = ("hashed", "use-m3", "use-m3-bge")


def embed_throughput(texts: list[str]) -> dict[str, tuple[float, float]]:
    """(chunks per second on the generated text, p50 ms of one question) per offline
    embedding."""
    rates = {}
    for name in EMBEDDINGS:
        model = build_local_backend(UsageTracker(), embedding=name).embed_model  # type: ignore[arg-type]
        model.get_text_embedding_batch(texts[:8])  # load the model
        started = time.perf_counter()
        model.get_text_embedding_batch(texts)
        per_second = len(texts) / (time.perf_counter() - started)
        query_p50, _ = timed(functools.partial(model.get_query_embedding, "How many days off?"), 50)
        rates[name] = (per_second, query_p50)
    return rates


def start_pgvector(workdir: Path) -> tuple[Any, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(str(workdir), cleanup_mode="delete")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return server, str(server.get_uri())


def run_case(
    store: str, size: int, texts: list[str], matrix: np.ndarray, queries: list[int],
    data_dir: Path, pg_dsn: str | None,
) -> dict[str, Any]:
    settings = load_settings(
        data_dir=data_dir, llm="local", vector_store=store, local_embedding="hashed",
        **({"pgvector_dsn": pg_dsn} if pg_dsn else {}),
    )
    backend = build_local_backend(UsageTracker(), embedding="hashed")
    nodes = [
        TextNode(text=t, id_=f"{i:08d}-0000-4000-8000-000000000000",
                 embedding=matrix[i].tolist(), metadata={"file_name": f"doc{i // 20}.md"})
        for i, t in enumerate(texts)
    ]
    name = f"bench-{size}"
    started = time.perf_counter()
    publish(ingest_config(settings), name, nodes, backend, {"embedding": backend.embedding_id,
                                             "documents": size // 20})
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    snapshot = load_snapshot(settings.indexes_dir, name, backend.embed_model,
                             backend.tracker.callback_manager,
                             stores=store_config(settings))
    load_s = time.perf_counter() - started
    it = iter(range(10**9))

    def dense() -> None:
        snapshot.top_k(matrix[queries[next(it) % len(queries)]], TOP_K)

    def bm25() -> None:
        snapshot.lexical.top_k(texts[queries[next(it) % len(queries)]][:60], TOP_K)

    def hybrid() -> None:
        q = queries[next(it) % len(queries)]
        d = snapshot.top_k(matrix[q], 20)
        lex = snapshot.lexical.top_k(texts[q][:60], 20)
        reciprocal_rank_fusion([[r for r, _ in d], [r for r, _ in lex]], limit=TOP_K)

    repeats = len(queries)
    dense_p50, dense_p99 = timed(dense, repeats)
    bm25_p50, bm25_p99 = timed(bm25, max(20, repeats // 4))
    hybrid_p50, hybrid_p99 = timed(hybrid, max(20, repeats // 4))
    recall = _recall(snapshot, matrix, queries[:50])
    return {"store": store, "size": size, "ingest_cps": size / ingest_s, "load_s": load_s,
            "dense": (dense_p50, dense_p99), "bm25": (bm25_p50, bm25_p99),
            "hybrid": (hybrid_p50, hybrid_p99), "recall": recall}


def _recall(snapshot: Any, matrix: np.ndarray, queries: list[int]) -> float:
    """Share of the exact top-10 (numpy) that the store's top-10 returns."""
    hits = 0
    for q in queries:
        exact = set(np.argsort(-(matrix @ matrix[q]))[:TOP_K].tolist())
        hits += len(exact & {r for r, _ in snapshot.top_k(matrix[q], TOP_K)})
    return hits / (TOP_K * len(queries))


def baseline(matrix: np.ndarray, queries: list[int], repeats: int) -> tuple[float, float]:
    it = iter(range(10**9))

    def bare() -> None:
        scores = matrix @ matrix[queries[next(it) % len(queries)]]
        idx = np.argpartition(-scores, TOP_K)[:TOP_K]
        idx[np.argsort(-scores[idx])]

    return timed(bare, repeats)


HEADER = (f"{'store':<9} {'chunks':>7} {'ingest/s':>9} {'load s':>7} {'dense p50':>10} "
          f"{'p99':>7} {'recall':>6} {'bm25 p50':>9} {'p99':>7} {'hybrid p50':>10} {'p99':>7}")


def _row(r: dict[str, Any]) -> str:
    return (f"{r['store']:<9} {r['size']:>7} {r['ingest_cps']:>9.0f} {r['load_s']:>7.2f} "
            f"{r['dense'][0]:>10.2f} {r['dense'][1]:>7.2f} {r['recall']:>6.2f} "
            f"{r['bm25'][0]:>9.2f} {r['bm25'][1]:>7.2f} {r['hybrid'][0]:>10.2f} "
            f"{r['hybrid'][1]:>7.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--stores", default="embedded,pgvector,qdrant")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=2400.0)
    parser.add_argument("--case-seconds", type=float, default=600.0,
                        help="skip a store's larger sizes once its measured ingest rate "
                        "projects a case past this (the largest size that fits is kept)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.max_seconds
    sizes = [int(s) for s in args.sizes.split(",")]
    stores = args.stores.split(",")
    skipped: list[str] = []
    rates: dict[str, float] = {}  # store -> chunks/s of its last case
    with tempfile.TemporaryDirectory(prefix="ragward-bench-retrieval-") as tmp:
        root = Path(tmp)
        server, dsn = start_pgvector(root / "pg") if "pgvector" in stores else (None, None)
        try:
            embedding = embed_throughput(corpus(200))
            print("embedding (chunks/s on generated text; p50 ms of one question): " + ", ".join(
                f"{name} {rate:.0f}/s {query_ms:.1f} ms"
                for name, (rate, query_ms) in embedding.items()))
            print(HEADER, flush=True)
            for size in sizes:  # each row printed as it is measured: a cut run keeps its rows
                texts = corpus(size)
                matrix = vectors(texts)
                queries = random.Random(size).sample(range(size), min(args.queries, size))
                b50, b99 = baseline(matrix, queries, len(queries))
                print(f"{'numpy':<9} {size:>7} {'-':>9} {'-':>7} {b50:>10.2f} {b99:>7.2f} "
                      f"{'1.00':>6} {'-':>9} {'-':>7} {'-':>10} {'-':>7}   (baseline)", flush=True)
                for store in stores:
                    if time.monotonic() > deadline:
                        skipped.append(f"{store}@{size} (run budget)")
                        continue
                    projected = size / rates[store] if store in rates else 0.0
                    if projected > args.case_seconds:
                        skipped.append(f"{store}@{size} (ingest projected at {projected:.0f} s "
                                       f"from {rates[store]:.0f} chunks/s)")
                        continue
                    row = run_case(store, size, texts, matrix, queries,
                                   root / f"{store}-{size}", dsn)
                    rates[store] = row["ingest_cps"]
                    print(_row(row), flush=True)
        finally:
            close_clients()
            if server is not None:
                server.cleanup()
    print("latencies in ms per query (top-10); ingest = publish (store + docstore + BM25 + "
          "switch) of pre-computed 512-d vectors")
    if skipped:
        print("skipped: " + "; ".join(skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
