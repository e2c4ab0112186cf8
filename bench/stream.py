"""Streaming: what ragward adds to a streamed answer, measured here, honestly.

Processes, all on this machine and stopped at the end:

* the **LLM**: ``tests/openai_server.py`` streaming an answer of ``--chunks``
  words, one chunk every ``--interval-ms`` (``stream_options.include_usage``);
* **rag_core** (``ragward rag-core``, openai backend against that LLM, the
  bundled handbook ingested through it): ``POST /v1/chat/stream`` (NDJSON);
* **ragward** (``ragward gateway`` in front of rag_core) with every control on:
  HS256 JWT, quota (Redis when ``RAGWARD_REDIS_URL`` is set, else in process),
  PII redaction of messages, sources and the stream, cache off (every stream
  a miss), audit + usage events (Kafka when ``RAGWARD_KAFKA_BOOTSTRAP`` is set).

Printed: time to first token (first answer text) of rag_core direct and through
the gateway, p50/p99 and the added p50/p99; the gateway's CPU per streamed
chunk (its process's utime+stime over the chunks relayed); streams per second
through one gateway worker at ``--concurrency`` with no pacing. LiteLLM's proxy
is not run by this script (it needs its own venv, see bench/gateway.py):
the comparison is reported as not measured.

    .venv/bin/python bench/stream.py                 # ~1 min
    .venv/bin/python bench/stream.py --streams 200 --chunks 100 --interval-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]
RAGWARD = str(Path(sys.executable).with_name("ragward"))
CLK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-0123456789-0123456789-abcdef"  # noqa: S105  (a throwaway bench key)
QUESTION = "How do I submit an expense claim?"


def cpu_ticks(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"{log.name} exited: {log.read_text()[-1500:]}")
            try:
                if (await client.get(url, timeout=1)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} not ready")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def direct_ttft(client: Any, url: str, token: str) -> tuple[float, int]:
    """rag_core's own stream: time to its first delta line, and the deltas."""
    started = time.perf_counter()
    first, deltas = None, 0
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    async with client.stream("POST", url + "/v1/chat/stream", json=body,
                             headers={"X-Internal-Token": token}) as response:
        async for line in response.aiter_lines():
            if '"type":"delta"' in line:
                deltas += 1
                first = first or time.perf_counter()
    return (first or time.perf_counter()) - started, deltas


async def gateway_ttft(client: Any, url: str, jwt: str) -> tuple[float, int]:
    """The gateway's SSE: time to the first content chunk, and the content chunks."""
    started = time.perf_counter()
    first, chunks = None, 0
    body = {"model": "default", "stream": True,
            "messages": [{"role": "user", "content": QUESTION}]}
    async with client.stream("POST", url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {jwt}"}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                chunks += 1
                first = first or time.perf_counter()
            elif line.startswith("data: {") and '"error"' in line:
                raise SystemExit(f"stream failed: {line}")
    return (first or time.perf_counter()) - started, chunks


async def run(args: argparse.Namespace) -> None:
    import httpx

    from rag_core.ingest import ingest
    from ragward.devservices import free_port
    from ragward.settings import load_settings
    from ragward.tokens import mint

    work = Path(tempfile.mkdtemp(prefix="ragward-stream-bench-"))
    llm_port, rag_port, gw_port = free_port(), free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAGWARD_", "OPENAI_"))}
    llm = start([sys.executable, "-m", "tests.openai_server", "--port", str(llm_port),
                 "--stream-delay-ms", str(args.interval_ms), "--answer-words", str(args.chunks)],
                {**base, "PYTHONPATH": str(REPO)}, work / "llm.log")
    procs = [llm]
    try:
        await asyncio.sleep(1.0)
        llm_url = f"http://127.0.0.1:{llm_port}/v1"
        rag_env = {**base, "RAGWARD_DATA_DIR": str(work / "rag"), "RAGWARD_LLM": "openai",
                   "OPENAI_BASE_URL": llm_url, "OPENAI_API_KEY": "sk-bench-not-real",
                   "RAGWARD_INTERNAL_TOKEN": "bench-internal", "RAGWARD_LOG_LEVEL": "warning"}
        ingest(load_settings(data_dir=work / "rag", llm="openai", openai_base_url=llm_url,
                             openai_api_key="sk-bench-not-real"), [], sample=True,
               show_progress=False)
        rag = start([RAGWARD, "rag-core", "--port", str(rag_port)], rag_env, work / "rag.log")
        procs.append(rag)
        gw_env = {**base, "RAGWARD_DATA_DIR": str(work / "gw"), "RAGWARD_JWT_SECRET": SECRET,
                  "RAGWARD_RAG_CORE_URL": f"http://127.0.0.1:{rag_port}",
                  "RAGWARD_INTERNAL_TOKEN": "bench-internal", "RAGWARD_CACHE_ENABLED": "false",
                  "RAGWARD_QUOTA_RPM": "100000000", "RAGWARD_QUOTA_TOKENS_PER_DAY": "2000000000",
                  "RAGWARD_LOG_LEVEL": "warning"}
        for name in ("RAGWARD_REDIS_URL", "RAGWARD_KAFKA_BOOTSTRAP"):
            if os.environ.get(name):
                gw_env[name] = os.environ[name]
        gw = start([RAGWARD, "gateway", "--port", str(gw_port)], gw_env, work / "gw.log")
        procs.append(gw)
        rag_url, gw_url = f"http://127.0.0.1:{rag_port}", f"http://127.0.0.1:{gw_port}"
        await wait_ready(rag_url + "/ready", rag, work / "rag.log")
        await wait_ready(gw_url + "/health", gw, work / "gw.log")
        jwt = mint(load_settings(jwt_secret=SECRET), sub="bench", tenant="bench",
                         roles=["reader"], ttl=3600)
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(5):  # warm-up
                await direct_ttft(client, rag_url, "bench-internal")
                await gateway_ttft(client, gw_url, jwt)
            direct, through = [], []
            for _ in range(args.streams):
                direct.append((await direct_ttft(client, rag_url, "bench-internal"))[0])
            before = cpu_ticks(gw.pid)
            relayed = 0
            for _ in range(args.streams):
                ttft, chunks = await gateway_ttft(client, gw_url, jwt)
                through.append(ttft)
                relayed += chunks
            cpu_s = (cpu_ticks(gw.pid) - before) / CLK
        # throughput: unpaced LLM would need another LLM process; the paced one bounds it,
        # so report streams/s at this interval and concurrency.
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(
                max_connections=args.concurrency)) as client:
            done = 0
            deadline = time.perf_counter() + args.seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await gateway_ttft(client, gw_url, jwt)
                    done += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            rate = done / (time.perf_counter() - started)
        added50 = (pct(through, 0.5) - pct(direct, 0.5)) * 1000
        added99 = (pct(through, 0.99) - pct(direct, 0.99)) * 1000
        print(json.dumps({
            "streams": args.streams, "chunks": args.chunks, "interval_ms": args.interval_ms,
            "ttft_ms_rag_core_direct": {"p50": round(pct(direct, 0.5) * 1000, 2),
                                        "p99": round(pct(direct, 0.99) * 1000, 2)},
            "ttft_ms_through_gateway": {"p50": round(pct(through, 0.5) * 1000, 2),
                                        "p99": round(pct(through, 0.99) * 1000, 2)},
            "added_ttft_ms": {"p50": round(added50, 2), "p99": round(added99, 2)},
            "gateway_content_chunks_relayed": relayed,
            "gateway_cpu_ms_per_upstream_chunk": round(cpu_s * 1000 / (args.streams * args.chunks),
                                                       4),
            "streams_per_s_one_gateway_worker": round(rate, 1),
            "concurrency": args.concurrency,
            "litellm": "not measured by this script",
            "redis": bool(gw_env.get("RAGWARD_REDIS_URL")),
            "kafka": bool(gw_env.get("RAGWARD_KAFKA_BOOTSTRAP")),
        }, indent=2))
    finally:
        for proc in reversed(procs):
            stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
