"""Two OS processes sharing one Redis enforce ONE combined quota, not one each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]

# One "gateway replica": its own interpreter, Redis client and RedisQuota. It says
# "ready" once connected and starts on "go", so both replicas run side by side.
WORKER = """
import asyncio, json, sys, time
import redis.asyncio as aioredis
from gateway.quota import QuotaConfig, RedisQuota
from ragward.errors import QuotaExceeded
from ragward.settings import TenantQuota

url, prefix = sys.argv[1], sys.argv[2]

async def main():
    config = QuotaConfig(rpm=20, tokens_per_day=10**9,
                         tenants={"tok": TenantQuota(rpm=10_000, tokens_per_day=1200)})
    client = aioredis.from_url(url, socket_timeout=2, max_connections=64)
    quota = RedisQuota(client, config, key_prefix=prefix)
    await quota.load_scripts()
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"

    async def one(tenant, estimate):
        try:
            admission = await quota.admit(tenant, estimate)
            return admission.admitted_at
        except QuotaExceeded:
            return None

    attempts, rpm = [], []
    for _ in range(15):  # spread over ~0.75 s so the two processes interleave
        attempts.append(time.time())
        rpm.append(await one("rpm", 0))
        await asyncio.sleep(0.05)
    tok = await asyncio.gather(*(one("tok", 100) for _ in range(10)))
    print(json.dumps({
        "rpm_admitted": sum(t is not None for t in rpm),
        "tok_admitted": sum(t is not None for t in tok),
        "attempts_from": attempts[0], "attempts_to": attempts[-1],
        "degraded": quota.status()}))
    await quota.close()
    await client.aclose()

asyncio.run(main())
"""


def test_two_processes_share_one_limit(redis_url: str, unique: str) -> None:
    """Two processes, side by side, each try 15 requests against a shared 20/min limit
    and 10 concurrent requests of 100 estimated tokens against a shared 1,200-token
    budget: together exactly 20 and 12 pass, and neither fell back to local limits."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, f"test:{unique}:"], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for proc in procs:  # both connected before either starts
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.communicate()
        raise
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    print("per process:", results)
    assert all(r["degraded"] == {"rpm": False, "tokens": False} for r in results)
    assert sum(r["rpm_admitted"] for r in results) == 20
    first, second = results
    assert first["attempts_from"] < second["attempts_to"]  # the two really ran side by side
    assert second["attempts_from"] < first["attempts_to"]
    assert all(r["rpm_admitted"] >= 5 for r in results)
    assert sum(r["tok_admitted"] for r in results) == 12
