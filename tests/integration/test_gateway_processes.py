"""Gateway replicas as real OS processes (`ragward gateway`) sharing one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from ragward.devservices import free_port
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer
from tests.upstream_server import UpstreamServer

RAGWARD = str(Path(sys.executable).with_name("ragward"))


@contextmanager
def ragward_process(args: list[str], env: dict[str, str],
                    log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``ragward ARGS`` in its own session, output to ``log``; stopped with SIGTERM (then
    SIGKILL) with all its children when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen([RAGWARD, *args], env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def gateway_process(env: dict[str, str], port: int,
                    log: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return ragward_process(["gateway", "--port", str(port)], env, log)


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path,
                       timeout_s: float = 30) -> None:
    async with httpx.AsyncClient() as client, asyncio.timeout(timeout_s):
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited: {log.read_text()[-2000:]}")
            try:
                if (await client.get(url + "/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


@asynccontextmanager
async def two_gateways(env: dict[str, str], tmp_path: Path) -> AsyncIterator[list[str]]:
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"gw{i}.log" for i in range(2)]
    env0 = {**env, "RAGWARD_DATA_DIR": str(tmp_path / "d0")}
    env1 = {**env, "RAGWARD_DATA_DIR": str(tmp_path / "d1")}
    with gateway_process(env0, ports[0], logs[0]) as a, \
         gateway_process(env1, ports[1], logs[1]) as b:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        await asyncio.gather(wait_healthy(urls[0], a, logs[0]), wait_healthy(urls[1], b, logs[1]))
        yield urls


async def test_two_gateway_processes_enforce_one_combined_limit(
    tmp_path: Path, upstream: UpstreamServer, redis_url: str, unique: str
) -> None:
    """Requests alternating between two replicas: the tenant's 10/min holds in total."""
    env = {"RAGWARD_JWT_SECRET": TEST_SECRET, "RAGWARD_RAG_CORE_URL": upstream.url,
           "RAGWARD_REDIS_URL": redis_url, "RAGWARD_QUOTA_RPM": "10",
           "RAGWARD_LOG_LEVEL": "warning"}
    tenant = f"shared-{unique}"
    async with two_gateways(env, tmp_path) as urls, httpx.AsyncClient(timeout=10) as client:
        statuses = []
        for i in range(20):
            response = await client.post(urls[i % 2] + "/v1/query",
                                         json={"question": f"q{i}"},
                                         headers=bearer(tenant=tenant))
            statuses.append(response.status_code)
    assert statuses.count(200) == 10
    assert statuses.count(429) == 10


async def test_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    """A malformed setting stops `ragward gateway` with a message naming the variable."""
    result = subprocess.run(
        [RAGWARD, "gateway"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "RAGWARD_JWT_SECRET": TEST_SECRET, "RAGWARD_QUOTA_RPM": "lots",
             "RAGWARD_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "RAGWARD_QUOTA_RPM" in result.stderr
    missing = subprocess.run(
        [RAGWARD, "gateway"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "RAGWARD_JWT_SECRET": TEST_SECRET, "RAGWARD_DATA_DIR": str(tmp_path)},
    )
    assert missing.returncode == 2 and "RAGWARD_RAG_CORE_URL" in missing.stderr
