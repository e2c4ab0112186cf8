"""``ragward gateway --workers N``: N processes on one port, each with its own spool."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ragward.devservices import free_port
from tests.conftest import TEST_SECRET
from tests.gateway_harness import bearer
from tests.integration.test_gateway_processes import RAGWARD, ragward_process, wait_healthy
from tests.upstream_server import UpstreamServer

pytestmark = pytest.mark.kafka


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def open_files(pid: int) -> list[str]:
    paths = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            paths.append(os.readlink(fd))
        except OSError:
            continue
    return paths


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:``port`` (/proc/net/tcp, state 0A)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def serving(pid: int, port: int) -> bool:
    """Whether ``pid`` holds its spool's lock and a socket listening on ``port``."""
    files = open_files(pid)
    return (any(f.endswith("/spool/LOCK") for f in files)
            and any(f"socket:[{inode}]" in files for inode in listening_inodes(port)))


async def wait_workers(parent: int, n: int, port: int, timeout_s: float = 60) -> list[int]:
    """The ``n`` worker pids once each holds its spool's lock and listens on ``port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = children(parent)
        if len(pids) == n and all(serving(c, port) for c in pids):
            return pids
        assert time.monotonic() < deadline, f"workers of {parent}: {pids}"
        await asyncio.sleep(0.1)


def spool_of(pid: int) -> str:
    return next(p for p in open_files(pid) if p.endswith("/spool/LOCK"))


async def queries(url: str, n: int) -> list[int]:
    """``n`` queries, each on a new connection (so the kernel picks a worker each time)."""
    statuses = []
    for i in range(n):
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(url + "/v1/query", json={"question": f"w {i}"},
                                  headers=bearer())
            statuses.append(r.status_code)
    return statuses


async def test_workers_share_one_port_each_with_its_own_spool_and_are_restarted_on_it(
    tmp_path: Path, upstream: UpstreamServer, kafka_bootstrap: str, unique: str
) -> None:
    """Two worker processes both listen on the one port and both serve; each holds the
    lock of its own spool (data_dir/worker-i); a SIGKILLed worker is replaced on the same
    slot, i.e. on the spool it must drain; SIGTERM stops the supervisor and every worker."""
    port = free_port()
    data = tmp_path / "data"
    env = {"RAGWARD_JWT_SECRET": TEST_SECRET, "RAGWARD_RAG_CORE_URL": upstream.url,
           "RAGWARD_DATA_DIR": str(data), "RAGWARD_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "RAGWARD_TOPIC_AUDIT": f"audit-{unique}", "RAGWARD_TOPIC_USAGE": f"usage-{unique}",
           "RAGWARD_LOG_LEVEL": "warning"}
    log = tmp_path / "gateway.log"
    url = f"http://127.0.0.1:{port}"
    with ragward_process(["gateway", "--workers", "2", "--port", str(port)], env, log) as proc:
        await wait_healthy(url, proc, log, within_s=120)  # two start at once
        workers = await wait_workers(proc.pid, 2, port)  # both listen on the one port
        assert sorted(spool_of(w) for w in workers) == [
            str(data / f"worker-{i}" / "spool" / "LOCK") for i in (0, 1)]
        before = {w: cpu_ticks(w) for w in workers}
        assert await queries(url, 120) == [200] * 120
        assert all(cpu_ticks(w) > before[w] for w in workers), "both workers served"

        slot0 = next(w for w in workers if spool_of(w).endswith("worker-0/spool/LOCK"))
        os.kill(slot0, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while slot0 in (pids := children(proc.pid)) or len(pids) < 2:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            await asyncio.sleep(0.1)
        replaced = await wait_workers(proc.pid, 2, port, timeout_s=120)
        new = next(w for w in replaced if w not in workers)
        assert spool_of(new) == str(data / "worker-0" / "spool" / "LOCK")
        await wait_healthy(url, proc, log, within_s=120)
        assert await queries(url, 20) == [200] * 20

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{w}").exists() for w in replaced)


def test_workers_must_be_positive(tmp_path: Path) -> None:
    """``--workers 0`` is refused with a one-line reason and exit code 2, nothing started."""
    done = subprocess.run([RAGWARD, "gateway", "--workers", "0"], capture_output=True,
                          text=True, check=False, timeout=60,
                          env={**os.environ, "RAGWARD_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert "--workers: must be at least 1" in done.stderr
