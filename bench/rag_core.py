"""rag_core local-backend latency and throughput at concurrency 1 and 16.

Two ways, same run, same sample index (ingested into a temporary directory):

* in-process: ``RagService.query`` called directly (the query path alone);
* over HTTP: ``ragward rag-core`` (uvicorn, a separate process) driven by one
  pooled aiohttp client; ``GET /health`` on the same server is the baseline
  (framework + loopback cost with no RAG work).

Each phase runs for ``--seconds`` (default 4) after a short warm-up and prints
p50 / p99 latency and queries per second. Bounded: well under 2 minutes.

    .venv/bin/python -m bench.rag_core [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from rag_core.configuration import build_service, ingest_config
from rag_core.evaluate import load_eval_set
from rag_core.ingest import ingest
from rag_core.schemas import QueryRequest
from ragward.logs import configure_logging
from ragward.settings import load_settings

Call = Callable[[int], Awaitable[None]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(name: str, call: Call, concurrency: int, seconds: float) -> dict[str, float]:
    for i in range(min(20, 4 * concurrency)):  # warm-up, not measured
        await call(i)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        n = w
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call(n)
            latencies.append(time.perf_counter() - started)
            n += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - began
    row = {
        "n": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": _quantile(latencies, 0.99) * 1000,
        "qps": len(latencies) / elapsed,
    }
    print(
        f"  {name:<28} c={concurrency:<3} n={row['n']:<6} p50={row['p50_ms']:7.2f} ms  "
        f"p99={row['p99_ms']:7.2f} ms  {row['qps']:8.1f} q/s",
        flush=True,
    )
    return row


async def bench_in_process(data_dir: Path, questions: list[str], seconds: float) -> None:
    service = build_service(load_settings(data_dir=data_dir))
    await service.start()
    try:
        async def query(n: int) -> None:
            await service.query(
                QueryRequest(question=questions[n % len(questions)]),
                tenant="bench", subject="bench", request_id=str(n),
            )

        print("in-process RagService.query (local backend, top_k=3):", flush=True)
        for concurrency in (1, 16):
            await phase("service.query", query, concurrency, seconds)
    finally:
        await service.stop()


async def _wait_ready(
    session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rag-core exited with {proc.returncode}")
        try:
            async with session.get(base + "/ready") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError("rag-core did not become ready in 90 s")


def start_rag_core(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "RAGWARD_DATA_DIR": str(data_dir), "RAGWARD_LOG_LEVEL": "warning"}
    env.pop("RAGWARD_INTERNAL_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragward.cli", "rag-core", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


def stop_rag_core(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def bench_http(
    proc: subprocess.Popen[bytes], base: str, questions: list[str], seconds: float
) -> None:
    bodies = [json.dumps({"question": q}).encode() for q in questions]
    headers = {"Content-Type": "application/json", "X-Tenant": "bench", "X-Subject": "bench"}
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        print(f"starting `ragward rag-core` on {base} ...", flush=True)
        await _wait_ready(session, base, proc)

        async def health(_: int) -> None:
            async with session.get(base + "/health") as response:
                await response.read()

        async def query(n: int) -> None:
            async with session.post(
                base + "/v1/query", data=bodies[n % len(bodies)], headers=headers
            ) as response:
                await response.read()
                assert response.status == 200, response.status

        print("over HTTP (uvicorn, separate process; aiohttp client):", flush=True)
        for concurrency in (1, 16):
            await phase("GET /health (baseline)", health, concurrency, seconds)
            await phase("POST /v1/query", query, concurrency, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per phase")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    configure_logging("console", "warning")
    questions = [item["question"] for item in load_eval_set()]
    with tempfile.TemporaryDirectory(prefix="ragward-bench-") as tmp:
        data_dir = Path(tmp)
        started = time.perf_counter()
        result = ingest(ingest_config(load_settings(data_dir=data_dir)), [], None, sample=True,
                        show_progress=False)
        print(f"sample index: {result.documents} documents, {result.chunks} chunks, "
              f"ingested in {time.perf_counter() - started:.2f}s "
              f"({len(questions)} distinct questions, cycled)", flush=True)
        asyncio.run(bench_in_process(data_dir, questions, args.seconds))
        if not args.skip_http:
            proc, base = start_rag_core(data_dir)
            try:
                asyncio.run(bench_http(proc, base, questions, args.seconds))
            finally:
                stop_rag_core(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
