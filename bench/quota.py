"""What the quota check adds to a request: latency and checks/s, Redis vs in-process.

Usage: .venv/bin/python -m bench.quota [--seconds 4] [--concurrency 32] [--tenants 50]
       [--loop asyncio|uvloop]

Uses RAGWARD_REDIS_URL when set, else starts a private redis-server through
ragward.devservices (and stops it). One "check" is what the gateway does per
request: ``admit`` (one EVALSHA: sliding window + token reservation) then
``settle`` (one EVALSHA). Phases, each bounded by --seconds:

1. Redis PING, sequential: the floor any Redis round trip pays on this machine.
2. RedisQuota admit+settle, sequential: the added latency of one request.
3. RedisQuota admit+settle, --concurrency tasks: checks/s and latency under load.
4. LocalQuota (embedded mode) sequential and concurrent: the in-process baseline.

Limits are set high so every check is admitted (the refused path costs the
same one round trip). Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from gateway.quota import LocalQuota, QuotaConfig, QuotaLimiter, RedisQuota
from ragward import devservices
from ragward.errors import QuotaExceeded


def pct(sorted_ns: list[int], q: float) -> float:
    """Quantile in microseconds (nearest rank)."""
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[index] / 1000


async def sequential(op: Callable[[], Awaitable[None]], seconds: float) -> list[int]:
    samples: list[int] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter_ns()
        await op()
        samples.append(time.perf_counter_ns() - started)
    samples.sort()
    return samples


async def concurrent(
    op: Callable[[], Awaitable[None]], seconds: float, tasks: int
) -> tuple[list[int], float, float]:
    samples: list[int] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            await op()
            samples.append(time.perf_counter_ns() - started)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    samples.sort()
    return samples, wall, cpu


def check_op(
    quota: QuotaLimiter, tenants: int, refused: list[int]
) -> Callable[[], Awaitable[None]]:
    names = itertools.cycle([f"tenant-{i}" for i in range(tenants)])

    async def op() -> None:
        try:
            admission = await quota.admit(next(names), 530)
        except QuotaExceeded:
            refused[0] += 1
            return
        await quota.settle(admission, 480)

    return op


def row(label: str, samples: list[int], rate: float, cpu_us: float | None = None) -> str:
    cpu = f"{cpu_us:8.1f}" if cpu_us is not None else "       -"
    return (f"{label:<44} {len(samples):>8} {pct(samples, 0.5):>9.1f} {pct(samples, 0.99):>9.1f} "
            f"{pct(samples, 1.0):>9.1f} {rate:>10.0f} {cpu}")


async def run(url: str, args: argparse.Namespace) -> None:
    config = QuotaConfig(rpm=10**9, tokens_per_day=10**15, redis_timeout_s=1.0)
    client = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                               max_connections=args.concurrency + 8)
    prefix = f"bench:{os.getpid()}:{int(time.time())}:"
    redis_quota = RedisQuota(client, config, key_prefix=prefix)
    local_quota = LocalQuota(config)
    refused = [0]
    lines: list[str] = []
    try:
        await client.ping()
        await redis_quota.load_scripts()  # what the gateway's lifespan does
        # warm up: fill the connection pool
        warm = check_op(redis_quota, args.tenants, refused)
        await asyncio.gather(*(warm() for _ in range(args.concurrency)))

        async def ping() -> None:
            await client.ping()

        print("1/5 redis PING, sequential", file=sys.stderr)
        s = await sequential(ping, args.seconds)
        lines.append(row("redis PING (round-trip floor), 1 at a time", s, len(s) / args.seconds))

        print("2/5 RedisQuota admit+settle, sequential", file=sys.stderr)
        s = await sequential(check_op(redis_quota, args.tenants, refused), args.seconds)
        lines.append(row("RedisQuota admit+settle, 1 at a time", s, len(s) / args.seconds))

        print(f"3/5 RedisQuota admit+settle, {args.concurrency} concurrent", file=sys.stderr)
        s, wall, cpu = await concurrent(check_op(redis_quota, args.tenants, refused),
                                        args.seconds, args.concurrency)
        lines.append(row(f"RedisQuota admit+settle, {args.concurrency} concurrent", s,
                         len(s) / wall, cpu / len(s) * 1e6))

        print("4/5 LocalQuota admit+settle, sequential", file=sys.stderr)
        s = await sequential(check_op(local_quota, args.tenants, refused), args.seconds / 2)
        lines.append(row("LocalQuota admit+settle, 1 at a time", s, len(s) / (args.seconds / 2)))

        print(f"5/5 LocalQuota admit+settle, {args.concurrency} concurrent", file=sys.stderr)
        s, wall, cpu = await concurrent(check_op(local_quota, args.tenants, refused),
                                        args.seconds / 2, args.concurrency)
        lines.append(row(f"LocalQuota admit+settle, {args.concurrency} concurrent", s,
                         len(s) / wall, cpu / len(s) * 1e6))
        degraded = redis_quota.status()
    finally:
        await redis_quota.close()
        # remove what the run wrote (keys would expire by themselves anyway)
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.unlink(key)
        await client.aclose()

    print(f"quota check cost ({os.cpu_count()} cores, loop={args.loop}, "
          f"{args.tenants} tenants, {args.seconds:g} s per Redis phase)")
    print(f"{'':<44} {'checks':>8} {'p50 µs':>9} {'p99 µs':>9} {'max µs':>9} "
          f"{'checks/s':>10} {'CPU µs':>8}")
    for line in lines:
        print(line)
    print(f"refused checks: {refused[0]} (expected 0); RedisQuota degraded during run: "
          f"{degraded}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0, help="per Redis phase (max 10)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 10.0)  # keeps the whole run well under a minute
    url = os.environ.get("RAGWARD_REDIS_URL")
    service = None
    if not url:
        print("RAGWARD_REDIS_URL unset: starting a private redis-server", file=sys.stderr)
        service = devservices.start_redis()
        url = service.address
    try:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(run(url, args))
        else:
            asyncio.run(run(url, args))
    finally:
        if service is not None:
            devservices.stop(service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
