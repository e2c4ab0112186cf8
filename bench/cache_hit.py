"""Cache hits versus misses inside the gateway (docs/performance.md: a hit in ≤ the Kafka
ack floor + 0.5 ms p50, durable audit included).

Starts Redis and Kafka (ragward.devservices), the fixed-latency upstream
(bench/upstream.py, 20 ms per answer so a miss is visibly a miss) and
`ragward gateway` with every control on, warms it up (1,500 requests: the
gateway's code paths and the fresh broker's JIT), then sends, one at a time, N
distinct questions twice — the first time a miss, the second a hit — and then
each once more ("hit after hit": no miss's after-response work running beside
it). Everything runs twice: with the audit on Kafka, and on the in-process bus,
the baseline without the durable write. "Inside the gateway"
is the gateway's own figure — its per-request log line's ``latency_ms``, from the
request's arrival to the response's first byte, which includes the quota check,
the cache read and the durable audit event (its clock stops once the small JSON answer
is handed to the server, so it is arrival to first byte plus one socket write). The
client-observed time is printed beside it. The floor, an ``acks=all`` send timed alone
from this process against the same broker (bench/harness.py), is measured in the same
run, right before the Kafka gateway's requests.

    python -m bench.cache_hit [--questions 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import jwt

from bench.harness import REPO, default_setting, kafka_ack_samples, module_command
from ragward import devservices
from telemetry.event_keys import new_key_env

WARM_UP = 1500  # requests sent before measuring
SECRET = "bench-secret-0123456789-0123456789-abcdef"  # noqa: S105 (a throwaway test key)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)


async def wait_http(url: str, timeout: float = 30) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def drive(url: str, questions: int, prefix: str) -> dict[str, list[float]]:
    """Each question as a miss then at once as a hit (the hit follows the miss's
    after-response work: settlement, cache write); then every question once more, so
    hits follow hits."""
    token = jwt.encode({"sub": "bench", "tenant": "t1", "roles": ["reader"],
                        "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}
    client: dict[str, list[float]] = {"miss": [], "hit": [], "hit after hit": []}
    async with aiohttp.ClientSession(headers=headers) as session:
        # Warm-up, not measured: the gateway's code paths and a freshly started broker's
        # JIT (its first thousand produce requests are slower than a running one's).
        for _ in range(WARM_UP):
            async with session.post(url + "/v1/query",
                                    json={"question": f"{prefix} warm-up"}) as response:
                await response.read()
    plan = [(i, kind) for i in range(questions) for kind in ("miss", "hit")]
    plan += [(i, "hit after hit") for i in range(questions)]
    async with aiohttp.ClientSession(headers=headers) as session:
        for n, (i, kind) in enumerate(plan, start=1):
            started = time.perf_counter()
            async with session.post(url + "/v1/query",
                                    json={"question": f"{prefix} {i}"}) as response:
                body = await response.json()
            client[kind].append((time.perf_counter() - started) * 1000)
            assert response.status == 200 and body["cached"] is (kind != "miss"), body
            if n % 500 == 0:
                print(f"  {n}/{len(plan)} requests", file=sys.stderr)
    return client


def gateway_latencies(log: Path, questions: int) -> dict[str, list[float]]:
    """The gateway's own latency per request, in the order ``drive`` sent them."""
    logged = []
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("event") == "request" and entry.get("route") == "/v1/query":
            logged.append((bool(entry.get("cached")), entry["latency_ms"]))
    logged = logged[-3 * questions:]  # after the warm-up
    first, second = logged[: 2 * questions], logged[2 * questions:]
    return {"miss": [ms for cached, ms in first if not cached],
            "hit": [ms for cached, ms in first if cached],
            "hit after hit": [ms for _, ms in second]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragward-cache-bench-"))
    services, processes = [], []
    try:
        print("starting Redis and Kafka ...", file=sys.stderr)
        services = [devservices.start_redis(), devservices.start_kafka()]
        redis, kafka = services
        upstream_port = devservices.free_port()
        processes.append(spawn([*module_command("upstream"),
                                "--port", str(upstream_port), "--latency-ms", "20"],
                               {}, work / "upstream.log"))
        base_env = {"RAGWARD_JWT_SECRET": SECRET, "RAGWARD_REDIS_URL": redis.address,
                    "RAGWARD_RAG_CORE_URL": f"http://127.0.0.1:{upstream_port}",
                    "RAGWARD_QUOTA_RPM": "1000000",
                    "RAGWARD_QUOTA_TOKENS_PER_DAY": "1000000000"}
        base_env.update(new_key_env(work, "bench-cache-hit"))  # it signs every event
        rows: list[tuple[str, list[float]]] = []
        floor_ms = float("nan")
        # Same gateway twice: audit events acknowledged by Kafka (the real thing), and on
        # the in-process bus — the baseline that shows what the durable write costs.
        for label, extra in (("Kafka audit", {"RAGWARD_KAFKA_BOOTSTRAP": kafka.address}),
                             ("in-process bus", {})):
            log = work / f"gateway-{len(rows)}.log"
            env = {**base_env, **extra, "RAGWARD_DATA_DIR": str(work / f"d{len(rows)}")}
            port = devservices.free_port()
            gateway = spawn([str(Path(sys.executable).with_name("ragward")), "gateway",
                             "--port", str(port)], env, log)
            processes.append(gateway)
            url = f"http://127.0.0.1:{port}"
            asyncio.run(wait_http(url + "/ready"))
            if "RAGWARD_KAFKA_BOOTSTRAP" in extra:  # after the broker's warm-up by the gateway
                acks = asyncio.run(kafka_ack_samples(
                    kafka.address, default_setting("kafka_linger_ms"), 200))
                floor_ms = quantile(acks, 0.5) * 1000
            print(f"{label}: {args.questions} questions three times, one at a time ...",
                  file=sys.stderr)
            client = asyncio.run(drive(url, args.questions, f"{label} {time.time_ns()}"))
            time.sleep(0.5)
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(timeout=10)
            inside = gateway_latencies(log, args.questions)
            rows += [(f"{label}: inside, miss", inside["miss"]),
                     (f"{label}: inside, hit", inside["hit"]),
                     (f"{label}: inside, hit after hit", inside["hit after hit"]),
                     (f"{label}: client, hit", client["hit"])]
        load = os.getloadavg()[0]
        print(f"\ncache hit vs miss, one request at a time (load average {load:.2f}; "
              "upstream answers in 20 ms)")
        print(f"{'':40}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
        for label, values in rows:
            print(f"{label:40}{len(values):>6}{quantile(values, 0.5):>10.3f}"
                  f"{quantile(values, 0.99):>10.3f}{statistics.fmean(values):>10.3f}")
        p50 = {label: quantile(values, 0.5) for label, values in rows}
        hit = p50["Kafka audit: inside, hit"]
        verdict = "MET" if hit <= floor_ms + 0.5 else "MISSED"
        print(f"Kafka ack floor (acks=all send alone, x200, same run): p50 "
              f"{floor_ms:.3f} ms")
        print(f"target: cache hit <= the ack floor + 0.5 ms p50 inside the gateway (with the "
              f"Kafka audit ack): {verdict} ({hit:.2f} ms vs {floor_ms + 0.5:.2f} ms; "
              f"{p50['Kafka audit: inside, hit after hit']:.2f} ms hit after hit); without "
              f"the ack: {p50['in-process bus: inside, hit']:.2f} ms "
              f"({p50['in-process bus: inside, hit after hit']:.2f} ms hit after hit)")
        return 0
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
        for service in services:
            devservices.stop(service)


if __name__ == "__main__":
    sys.exit(main())
