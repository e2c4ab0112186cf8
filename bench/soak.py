"""Endurance: mixed requests through the whole stack, watching for anything that grows.

Every part its own process on 127.0.0.1, started and stopped here: the fake OpenAI
upstream (``bench.stream``'s), ``ragward rag-core`` (openai backend, the handbook
indexed through the stub's embeddings), ``ragward gateway`` (every control on), Redis,
Kafka and the three consumers (``ragward consumer metrics|alerts|audit``). A client
(aiohttp on uvloop, in this process) sends a fixed mix — single queries (cache
misses), cache hits, batch queries, OpenAI-style streamed chats through
``/v1/chat/completions``, 4xx (no token, wrong role, a malformed body) and quota
rejections (a tenant with a small ``rpm``) — at most ``--concurrency`` at a time,
paced to last at least ``--min-seconds``, bounded by ``--requests`` and
``--max-seconds``.

Per window of ``--window`` requests: RSS and open descriptors of every process, the
gateway's asyncio task count (``ragward_gateway_event_loop_tasks`` on its /metrics),
Redis ``used_memory``, the consumer groups' lag, p50/p99 of the window. At the end:
audit records in the store == requests sent, the metrics consumer's and the gateway's
request counts == requests sent, no 5xx; and the targets (RSS growth after the first
window ≤ 5 % per process, descriptors and tasks flat, p99 drift ≤ 20 %). Charts
(RSS and latency over time) into bench/out/soak.png.

    .venv/bin/python -m bench.soak            # 100,000 requests at 100 req/s, >= 16 min
    .venv/bin/python -m bench.soak --quick    # 5,000 requests, ~2 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import harness
from bench.stream import answer_text, signing_settings, start_ragward

say = harness.say
HEAVY, QUOTA = "t1", "tq"  # the main tenant; a tenant whose small rpm makes 429s
QUOTA_RPM = 30
HITS = 40  # distinct questions asked again and again: cache hits after the first
# (kind, weight): the mix of every 100 requests
MIX = [("hit", 40), ("query", 20), ("batch", 5), ("chat", 10), ("unauth", 5),
       ("forbidden", 5), ("malformed", 5), ("quota", 10)]
CONSUMERS = ("metrics", "alerts", "audit")


@dataclass
class Window:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    rss_mb: dict[str, float]
    fds: dict[str, int]
    tasks: float
    redis_mb: float
    lag: dict[str, int]
    statuses: dict[str, int] = field(default_factory=dict)
    # Redis key family -> [keys, bytes (MEMORY USAGE), keys without a TTL]
    redis_keys: dict[str, list[int]] = field(default_factory=dict)
    # consumer -> its own accounting (bench.memprobe): Python blocks, malloc, SQLite
    heap: dict[str, dict[str, float]] = field(default_factory=dict)
    # process -> its descriptors by kind (fds_by_kind): which pool or peer holds them
    fd_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    elapsed_s: float = 0.0  # since the load began, at the window's end


# ------------------------------------------------------------------ process readings


def rss_mb(pid: int) -> float:
    """Resident set of the process tree under ``pid`` (MB)."""
    total = 0
    for p in harness.process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def open_fds(pid: int) -> int:
    total = 0
    for p in harness.process_tree(pid):
        try:
            total += len(list(Path(f"/proc/{p}/fd").iterdir()))
        except OSError:
            continue
    return total


_TCP_STATES = {"01": "", "08": " close-wait", "0A": "listen"}  # others: " state XX"


def tcp_sockets() -> dict[str, tuple[int, int, str]]:
    """Socket inode -> (local port, remote port, state) for every TCP socket on the host."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                cells = line.split()
                local, remote, state, inode = cells[1], cells[2], cells[3], cells[9]
                table[inode] = (int(local.rsplit(":", 1)[1], 16),
                                int(remote.rsplit(":", 1)[1], 16),
                                _TCP_STATES.get(state, f" state {state}"))
    return table


def fds_by_kind(pids: dict[str, int]) -> dict[str, dict[str, int]]:
    """Per process, its open descriptors by what they are: TCP connections by the process
    at the other end (``to redis``: this process dialled Redis; ``from gateway``: the
    gateway dialled it; ``from client``: a peer outside the stack, this script's load),
    with ``close-wait`` for a connection its peer has closed and it has not (a leak),
    then listening sockets, other sockets, pipes, files and the rest."""
    table = tcp_sockets()
    links: dict[str, list[str]] = {}
    port_owner: dict[int, str] = {}  # local port of every tracked socket -> its process
    listening: dict[int, str] = {}
    for name, root in pids.items():
        for pid in harness.process_tree(root):
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        links.setdefault(name, []).append(os.readlink(fd))
        for link in links.get(name, []):
            if (row := table.get(link.removeprefix("socket:[").rstrip("]"))) is not None:
                port_owner[row[0]] = name
                if row[2] == "listen":
                    listening[row[0]] = name
    kinds: dict[str, dict[str, int]] = {}
    for name, targets in links.items():
        counts: Counter[str] = Counter()
        for link in targets:
            row = table.get(link.removeprefix("socket:[").rstrip("]"))
            if row is not None:
                local, remote, state = row
                if state == "listen":
                    counts["listen"] += 1
                elif listening.get(local) == name:  # accepted on one of its ports
                    counts[f"from {port_owner.get(remote, 'client')}{state}"] += 1
                else:
                    counts[f"to {listening.get(remote, 'elsewhere')}{state}"] += 1
            elif link.startswith("socket:"):
                counts["other socket"] += 1
            elif link.startswith("pipe:"):
                counts["pipe"] += 1
            elif link.startswith("anon_inode:"):
                counts[link.removeprefix("anon_inode:").strip("[]")] += 1
            else:
                counts["file"] += 1
        kinds[name] = dict(counts)
    return kinds


def metric_sum(url: str, name: str, where: str = "") -> float:
    """Sum of the samples of ``name`` (with ``where`` in their labels) at ``url``."""
    _, body = harness.http(url, timeout=10)
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and not line.startswith("#") and where in line:
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] == name:
                total += float(value)
    return total


async def redis_used_mb(address: str) -> float:
    import redis.asyncio as aioredis

    client = aioredis.from_url(address)
    try:
        info = await client.info("memory")
        return float(info["used_memory"]) / 1e6
    finally:
        await client.aclose()


def key_family(key: str) -> str:
    """``ragward:cache:{t1}:3fa9…`` -> ``ragward:cache:{*}:*``: the tenant (hash tag),
    digests and days replaced, so keys group by what wrote them."""
    head, brace, rest = key.partition("{")
    if brace:
        rest = "{*}" + rest.partition("}")[2]
    return head + re.sub(r"[0-9a-f]{16,}|\d{4}-\d{2}-\d{2}|\d{6,}", "*", rest)


async def redis_keyspace(address: str) -> dict[str, list[int]]:
    """Every key, by family: how many, their bytes (``MEMORY USAGE``), how many have no
    TTL (a key without one, or without a bound, is a leak in waiting)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(address)
    families: dict[str, list[int]] = {}
    try:
        keys = [key async for key in client.scan_iter(count=1000)]
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.memory_usage(key)
                pipe.ttl(key)
            replies = await pipe.execute()
            for i, key in enumerate(chunk):
                size, ttl = replies[2 * i], replies[2 * i + 1]
                if ttl == -2:  # expired between SCAN and TTL
                    continue
                row = families.setdefault(key_family(key.decode()), [0, 0, 0])
                row[0] += 1
                row[1] += size or 0
                row[2] += ttl == -1
        return families
    finally:
        await client.aclose()


async def consumer_lag(bootstrap: str, groups: dict[str, list[str]]) -> dict[str, int]:
    """Records each group has yet to commit on its topics."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await probe.start()
    try:
        lag = {}
        for group, topics in groups.items():
            try:
                committed = await admin.list_consumer_group_offsets(group)
            except KafkaError:  # the coordinator moving: no reading this window
                lag[group] = -1
                continue
            tps = [tp for tp in committed if tp.topic in topics]
            ends = await probe.end_offsets(tps) if tps else {}
            lag[group] = sum(ends[tp] - committed[tp].offset for tp in tps)
        return lag
    finally:
        await probe.stop()
        await admin.close()


# ------------------------------------------------------------------ the load


class Client:
    """The mix, request by request; latency and status of each."""

    def __init__(self, base: str, tokens: dict[str, str]) -> None:
        self.base, self.tokens = base, tokens
        self.kinds = itertools.cycle([k for k, w in MIX for _ in range(w)])
        self.n = 0
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.errors: list[str] = []

    def _request(self, kind: str, i: int) -> tuple[str, dict[str, Any], dict[str, str]]:
        auth = {"Authorization": f"Bearer {self.tokens[HEAVY]}"}
        question = f"soak {i}: how many days of annual leave do I get?"
        if kind == "hit":
            return "/v1/query", {"question": f"cached {i % HITS}: annual leave?"}, auth
        if kind == "batch":
            return "/v1/query/batch", {"questions": [f"{question} ({j})" for j in range(3)]}, auth
        if kind == "chat":
            return "/v1/chat/completions", {
                "model": "default", "stream": True, "max_tokens": 20,
                "messages": [{"role": "user", "content": question}]}, auth
        if kind == "unauth":
            return "/v1/query", {"question": question}, {}
        if kind == "forbidden":
            return "/v1/query", {"question": question}, {
                "Authorization": f"Bearer {self.tokens['compliance']}"}
        if kind == "malformed":
            return "/v1/query", {"question": 7}, auth
        if kind == "quota":
            return "/v1/query", {"question": question}, {
                "Authorization": f"Bearer {self.tokens[QUOTA]}"}
        return "/v1/query", {"question": question}, auth

    async def one(self, session: Any) -> None:
        self.n += 1
        i, kind = self.n, next(self.kinds)
        path, body, headers = self._request(kind, i)
        start = time.perf_counter()
        try:
            async with session.post(self.base + path, json=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
            if kind == "chat" and status == 200 and b"data: [DONE]" not in raw:
                status = -2  # a stream that ended without [DONE]
        except Exception as exc:
            status = -1
            if len(self.errors) < 5:
                self.errors.append(f"{kind}: {exc!r}")
        self.latencies.append(time.perf_counter() - start)
        self.statuses[str(status)] += 1
        self.by_kind[kind] += 1


async def drive(client: Client, args: argparse.Namespace, on_window: Any) -> float:
    """Send ``args.requests`` (or until ``max_seconds``), ``concurrency`` at a time, paced to
    last ``min_seconds``; call ``on_window`` after each ``window`` requests.

    Paced without catching up: a request that could not go at its slot (the machine was
    busy) goes as soon as it can and the next slot is one interval after *it*, so the rate
    never rises above ``requests / min_seconds`` to make up for lost time — what is kept
    for a TTL (the answer cache) and what pools open (connections) follow the rate, and a
    steady rate is what makes a window comparable with the next."""
    import aiohttp

    interval = args.min_seconds / args.requests
    started = time.monotonic()
    next_slot = started
    deadline = started + args.max_seconds
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        sent = 0
        while sent < args.requests and time.monotonic() < deadline:
            size = min(args.window, args.requests - sent)
            queue = iter(range(size))

            async def worker(queue: Any) -> None:
                nonlocal sent, next_slot
                for _ in queue:
                    due = next_slot
                    next_slot = max(due, time.monotonic()) + interval
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    if time.monotonic() >= deadline:
                        return
                    sent += 1
                    await client.one(session)

            await asyncio.gather(*(worker(queue) for _ in range(args.concurrency)))
            await on_window()
    return time.monotonic() - started


# ------------------------------------------------------------------ main


def percentile_ms(values: list[float], q: float) -> float:
    return harness.percentile(sorted(values), q) * 1000


def run(args: argparse.Namespace) -> int:
    harness.OUT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ragward-soak-"))
    procs = harness.Processes(workdir)
    notes: list[str] = [f"load average at start {harness.load1():.2f}; "
                        f"{harness.code_version()}"]
    windows: list[Window] = []
    try:
        from ragward import devservices

        say(f"starting the stack; logs in {workdir}")
        port = harness.free_port()
        upstream = procs.spawn("upstream", harness.module_command(
            "stream", "--serve-upstream", json.dumps(
                {"port": port, "interval_ms": 0, "answer": answer_text(20)})),
            harness.child_env())
        redis = devservices.start_redis()
        procs.services.append(redis)
        kafka = harness.start_kafka(procs, notes)
        if kafka is None:
            raise SystemExit("Kafka did not start")
        upstream_url = f"http://127.0.0.1:{port}"
        harness.wait_ready("upstream", upstream, upstream_url + "/v1/chat/completions", 15,
                           workdir)
        config = workdir / "ragward.toml"
        config.write_text(f"[quotas.tenants.{QUOTA}]\nrpm = {QUOTA_RPM}\n")
        # the gateway signs every event, the consumers verify them against the key set
        keys = signing_settings(workdir / "keys", "soak-1")
        base, _, gateway, rag_core = start_ragward(
            procs, workdir, upstream_url + "/v1", redis, kafka, config=config, **keys)
        consumers, consumer_ports = {}, {kind: harness.free_port() for kind in CONSUMERS}
        probes = workdir / "memprobe"
        for kind in CONSUMERS:
            # `ragward consumer KIND` with a SIGUSR1 reading of where its memory is
            trace = ["--trace"] if args.trace_memory else []
            consumers[kind] = procs.spawn(kind, harness.module_command(
                "memprobe", str(probes / kind), *trace, "consumer", kind),
                harness.child_env(**harness.ragward_env(
                    kafka_bootstrap=kafka.address, redis_url=redis.address,
                    data_dir=workdir / f"{kind}-data", consumer_port=consumer_ports[kind],
                    log_level="warning", host="127.0.0.1", event_keys=keys["event_keys"])))
        for kind in CONSUMERS:  # joined their groups: lag is measurable from the start
            harness.wait_ready(kind, consumers[kind],
                               f"http://127.0.0.1:{consumer_ports[kind]}/ready", 180, workdir)
        from ragward.settings import load_settings
        from ragward.tokens import mint

        settings = load_settings(jwt_secret=harness.SECRET, data_dir=workdir)
        tokens = {HEAVY: mint(settings, "soak", HEAVY, ["reader"], ttl=7200),
                  QUOTA: mint(settings, "soak", QUOTA, ["reader"], ttl=7200),
                  "compliance": mint(settings, "soak", HEAVY, ["compliance"], ttl=7200)}
        pids = {"gateway": gateway.pid, "rag-core": rag_core.pid, "upstream": upstream.pid,
                "redis": redis.pid, "kafka": kafka.pid,
                **{f"{k} consumer": p.pid for k, p in consumers.items()}}
        client = Client(base, tokens)
        topics = [harness.default_setting("topic_audit"), harness.default_setting("topic_usage")]
        groups = {f"ragward-{k}": topics for k in CONSUMERS}
        last = [0, time.monotonic()]
        began = last[1]

        async def on_window() -> None:
            done = client.n
            lat = client.latencies[last[0]:]
            seconds = time.monotonic() - last[1]
            last[:] = [len(client.latencies), time.monotonic()]
            lag = await consumer_lag(kafka.address, groups)
            window = Window(
                requests=done, seconds=round(seconds, 1), p50_ms=percentile_ms(lat, 0.5),
                p99_ms=percentile_ms(lat, 0.99),
                rss_mb={k: round(rss_mb(p), 1) for k, p in pids.items()},
                fds={k: open_fds(p) for k, p in pids.items()},
                fd_kinds=fds_by_kind(pids), elapsed_s=round(time.monotonic() - began, 1),
                tasks=await asyncio.to_thread(
                    metric_sum, base + "/metrics", "ragward_gateway_event_loop_tasks"),
                redis_mb=round(await redis_used_mb(redis.address), 2), lag=lag,
                statuses=dict(client.statuses),
                redis_keys=await redis_keyspace(redis.address))
            windows.append(window)
            window.heap = await asyncio.to_thread(take_readings, probes, consumers,
                                                  len(windows))
            say(f"{done:>7} requests  {len(lat) / max(seconds, 1e-9):6.1f} req/s  "
                f"p50 {window.p50_ms:6.1f} ms  p99 {window.p99_ms:7.1f} ms  "
                f"tasks {window.tasks:.0f}  redis {window.redis_mb} MB  lag {sum(lag.values())}"
                f"  load {harness.load1():.1f}")

        import uvloop

        say(f"all up; {args.requests} requests, {args.concurrency} at a time, at least "
            f"{args.min_seconds:g} s, at most {args.max_seconds:g} s")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            elapsed = runner.run(drive(client, args, on_window))
        from telemetry.configuration import default_sqlite_path

        totals = settle(client, base, f"http://127.0.0.1:{consumer_ports['metrics']}/metrics",
                        default_sqlite_path(load_settings(data_dir=workdir / "audit-data")),
                        kafka.address, groups)
    finally:
        harness.stop_and_keep_logs(procs, workdir, harness.OUT / "logs-soak")
    lines = report(windows, client, elapsed, totals, notes, args)
    if args.trace_memory:
        lines += memory_diffs(probes, len(windows))
    print("\n".join(lines), flush=True)
    lines.append(chart(windows, harness.OUT / "soak.png"))
    (harness.OUT / "soak.txt").write_text("\n".join(lines) + "\n")
    (harness.OUT / "soak.json").write_text(json.dumps(
        {"windows": [asdict(w) for w in windows], "totals": totals, "notes": notes},
        indent=2))
    say(f"done; {lines[-1]}; results in bench/out/soak.txt")
    return 0


def take_readings(probes: Path, consumers: dict[str, Any], number: int
                  ) -> dict[str, dict[str, float]]:
    """SIGUSR1 to every consumer (bench.memprobe); its reading, waited for (bounded)."""
    for proc in consumers.values():
        os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 180
    readings = {}
    for kind in consumers:
        done = probes / kind / f"{number:03d}.json"
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        with contextlib.suppress(OSError, ValueError):  # none, or half-written at the deadline
            figures = json.loads(done.read_text())
            readings[kind] = {k: v for k, v in figures.items() if isinstance(v, float | int)}
    return readings


def memory_diffs(probes: Path, readings: int) -> list[str]:
    """Per consumer: what grew from the first window to the last, and in the last one."""
    from bench.memprobe import diff

    out = ["", "Traced heaps (bench.memprobe --trace; tracing on, so RSS above is not "
           "the judge):"]
    for kind in CONSUMERS:
        if readings < 2 or not (probes / kind / f"{readings:03d}.json").exists():
            out.append(f"{kind}: no readings")
            continue
        out.append(f"{kind} consumer, window 1 -> {readings}:")
        out += diff(probes / kind, 1, readings)
        out.append(f"{kind} consumer, window {readings - 1} -> {readings}:")
        out += diff(probes / kind, readings - 1, readings, top=6)
    return out


def settle(client: Client, base: str, metrics_url: str, audit_db: Path, bootstrap: str,
           groups: dict[str, list[str]]) -> dict[str, Any]:
    """Wait (bounded) until the audit store has a record per request, then count what
    each part saw."""
    sent = client.n
    deadline = time.monotonic() + 180
    records = 0
    while time.monotonic() < deadline:
        if audit_db.exists():
            with sqlite3.connect(audit_db) as db:
                # a batch or a chat may add per-question records: count requests
                records = db.execute(
                    "SELECT COUNT(DISTINCT request_id) FROM audit_records").fetchone()[0]
        if records >= sent:
            break
        time.sleep(1)
    time.sleep(3)  # the metrics consumer commits on its own beat
    return {"sent": sent, "audit_records": records,
            # the API's routes only: this script's own /metrics scrapes are counted too
            "gateway_requests_total": metric_sum(base + "/metrics",
                                                 "ragward_gateway_requests_total", "/v1/"),
            "metrics_consumer_requests_total": metric_sum(metrics_url, "ragward_requests_total"),
            "lag_after": asyncio.run(consumer_lag(bootstrap, groups))}


def heap_table(windows: list[Window]) -> list[str]:
    """Where each consumer's memory is, window by window (its own accounting)."""
    if not any(w.heap for w in windows):
        return []
    out = ["", "consumer memory by owner: Python blocks (thousands) / malloc in use MB / "
           "malloc freed-but-kept MB / SQLite MB (page cache)",
           f"{'requests':>8}  " + "  ".join(f"{k + ' consumer':>30}" for k in CONSUMERS)]
    for w in windows:
        cells = []
        for kind in CONSUMERS:
            h = w.heap.get(kind, {})
            cells.append(f"{h.get('py_blocks_k', 0):6.0f} / {h.get('malloc_in_use_mb', 0):5.1f}"
                         f" / {h.get('malloc_free_kept_mb', 0):5.1f} / "
                         f"{h.get('sqlite_mb', 0):5.1f}".rjust(30))
        out.append(f"{w.requests:8d}  " + "  ".join(cells))
    return out


def redis_table(windows: list[Window]) -> list[str]:
    """Redis keys per family, window by window: count / MB and keys without a TTL."""
    families = sorted({f for w in windows for f in w.redis_keys})
    if not families:
        return []
    out = ["", "Redis keys per family: keys / MB (MEMORY USAGE) [keys without TTL]",
           f"{'requests':>8}  " + "  ".join(f"{f[:30]:>30}" for f in families)]
    for w in windows:
        cells = []
        for f in families:
            keys, size, no_ttl = w.redis_keys.get(f, [0, 0, 0])
            cells.append(f"{keys:>8d} / {size / 1e6:7.2f} [{no_ttl}]".rjust(30))
        out.append(f"{w.requests:8d}  " + "  ".join(cells))
    return out


def fd_table(windows: list[Window]) -> list[str]:
    """Per process whose descriptors changed: each kind that changed, window by window."""
    out: list[str] = []
    for name in windows[0].fd_kinds if windows else []:
        rows = [w.fd_kinds.get(name, {}) for w in windows]
        kinds = sorted({k for row in rows for k in row
                        if len({r.get(k, 0) for r in rows}) > 1})
        if not kinds:
            continue
        if not out:
            out += ["", "open fds by kind, for the kinds that changed (to X: connections this "
                    "process opened to X; from X: accepted from X; client: this script)"]
        out.append(f"{name:>8}  " + "  ".join(f"{k[:22]:>22}" for k in kinds))
        out += [f"{w.requests:8d}  " + "  ".join(f"{row.get(k, 0):22d}" for k in kinds)
                for w, row in zip(windows, rows, strict=True)]
    return out


def _connections(window: Window, name: str) -> int:
    return sum(n for kind, n in window.fd_kinds.get(name, {}).items()
               if kind.startswith(("to ", "from ")))


def fd_checks(windows: list[Window], names: list[str]) -> list[tuple[str, str, bool | None]]:
    """Descriptors, split by what a leak looks like. Connections come from pools (the
    gateway's to Redis and rag-core, rag-core's to the upstream, keep-alive from the
    client) that open one per request in flight at the busiest moment and close idle
    ones on their own clocks: they follow the concurrency, so they must plateau — no
    higher peak in the second half of the run than in the first (+2 for a burst) — not
    stay equal. Everything else (files, pipes, listeners, event fds) must not change,
    and no connection may sit in CLOSE_WAIT (closed by its peer, never by us: a leak)."""
    first, last = windows[0], windows[-1]
    halves = (windows[:len(windows) // 2], windows[len(windows) // 2:])
    checks: list[tuple[str, str, bool | None]] = []
    for n in names:
        d = (last.fds[n] - _connections(last, n)) - (first.fds[n] - _connections(first, n))
        checks.append((f"non-connection fds change: {n}", f"{d:+d}", abs(d) <= 5))
    for n in names:
        early, late = (max(_connections(w, n) for w in half) for half in halves)
        checks.append((f"connection peaks 1st/2nd half: {n}", f"{early}, {late}",
                       late <= early + 2))
    stuck = sum(count for kinds in last.fd_kinds.values() for kind, count in kinds.items()
                if kind.endswith("close-wait"))
    checks.append(("connections in CLOSE_WAIT (last window)", str(stuck), stuck == 0))
    return checks


def redis_baseline(windows: list[Window], ttl_s: float) -> int | None:
    """The first window that ends a cache TTL or more after the load began: before it the
    answer cache (keys expire after the TTL) is still filling, so Redis' memory is judged
    from there; None when no window after it is left to compare (a run shorter than one
    TTL and a window: Redis is then not judged, rather than judged against itself)."""
    warm = next((i for i, w in enumerate(windows) if w.elapsed_s >= ttl_s), None)
    return warm if warm is not None and warm < len(windows) - 1 else None


def growth(first: float, last: float) -> float:
    return (last - first) / first * 100 if first else float("nan")


def report(windows: list[Window], client: Client, elapsed: float, totals: dict[str, Any],
           notes: list[str], args: argparse.Namespace) -> list[str]:
    f = harness.fmt
    names = list(windows[0].rss_mb) if windows else []
    out = ["", "=" * 110,
           f"soak @ {notes[0]} — {totals['sent']} requests in {elapsed:.0f} s "
           f"({totals['sent'] / max(elapsed, 1e-9):.1f} req/s), concurrency {args.concurrency}, "
           f"2 cores shared with other engineers' work", "=" * 110,
           "per window: requests so far, p50/p99 ms of the window, gateway asyncio tasks, "
           "Redis MB, consumer lag (records), then RSS MB / open fds per process",
           f"{'requests':>8} {'secs':>6} {'p50':>7} {'p99':>8} {'tasks':>5} {'redisMB':>7} "
           f"{'lag':>6}  " + "  ".join(f"{n[:12]:>12}" for n in names)]
    for w in windows:
        out.append(f"{w.requests:8d} {w.seconds:6.0f} {f(w.p50_ms)} {f(w.p99_ms, 8)} "
                   f"{w.tasks:5.0f} {w.redis_mb:7.2f} {sum(w.lag.values()):6d}  "
                   + "  ".join(f"{w.rss_mb[n]:6.0f}/{w.fds[n]:<5d}" for n in names))
    out += heap_table(windows) + redis_table(windows) + fd_table(windows)
    statuses = Counter(client.statuses)
    five = sum(v for k, v in statuses.items() if k.startswith("5") or k.startswith("-"))
    out += ["", f"statuses: {dict(sorted(statuses.items()))}; by kind: "
            f"{dict(client.by_kind)}"]
    if client.errors:
        out.append(f"client errors (first): {client.errors}")
    checks: list[tuple[str, str, bool | None]] = [  # None: not judged in this run
        ("requests with an audit record == requests", f"{totals['audit_records']} / {totals['sent']}",
         totals["audit_records"] == totals["sent"]),
        ("gateway requests_total == requests",
         f"{totals['gateway_requests_total']:.0f} / {totals['sent']}",
         round(totals["gateway_requests_total"]) == totals["sent"]),
        ("metrics consumer requests_total == requests",
         f"{totals['metrics_consumer_requests_total']:.0f} / {totals['sent']}",
         round(totals["metrics_consumer_requests_total"]) == totals["sent"]),
        ("no 5xx (nor transport errors)", str(five), five == 0),
    ]
    if len(windows) >= 2:
        first, last = windows[0], windows[-1]
        ttl = float(harness.default_setting("cache_ttl_s"))
        warm = redis_baseline(windows, ttl)
        why = (f"the answer cache holds the distinct answers of the last cache TTL ({ttl:.0f} s;"
               " insertion rate x TTL, every key expiring: the Redis keys table above), so it "
               "is still filling before one TTL, and its size then follows the request rate, "
               "which the pacing holds constant only while the machine keeps up")
        if warm is None:
            out += ["", f"Redis is not judged: no window after one ending a cache TTL into the "
                    f"load; {why}."]
        else:
            out += ["", f"Redis is judged from window {warm + 1} ({windows[warm].requests} "
                    f"requests, {windows[warm].elapsed_s:.0f} s into the load), the first to end "
                    f"a cache TTL after the load began: {why}."]
        for n in names:
            if n != "redis":
                g = growth(first.rss_mb[n], last.rss_mb[n])
                checks.append((f"RSS growth after window 1: {n}", f"{g:+.1f} %", g <= 5.0))
            elif warm is None:
                checks.append(("RSS growth after one cache TTL: redis", "-", None))
            else:
                g = growth(windows[warm].rss_mb[n], last.rss_mb[n])
                checks.append((f"RSS growth after window {warm + 1}: {n}", f"{g:+.1f} %",
                               g <= 5.0))
        if warm is not None:
            # independent of the rate: what each key costs must not grow (a leak inside
            # Redis, keys bloating), whatever number of keys the rate keeps
            g = growth(*(w.redis_mb / max(1, sum(row[0] for row in w.redis_keys.values()))
                         for w in (windows[warm], last)))
            checks.append((f"Redis used memory per key after window {warm + 1}",
                           f"{g:+.1f} %", g <= 5.0))
        checks += fd_checks(windows, names)
        no_ttl = sum(row[2] for row in last.redis_keys.values())
        checks.append(("Redis keys without a TTL (last window)", str(no_ttl), no_ttl == 0))
        checks.append(("gateway asyncio tasks change", f"{last.tasks - first.tasks:+.0f}",
                       abs(last.tasks - first.tasks) <= 5))
        g = growth(first.p99_ms, last.p99_ms)
        checks.append(("p99 drift (last window vs first)", f"{g:+.1f} %", g <= 20.0))
    if len(windows) >= 4:  # still growing, or levelled off? the second half alone
        middle, last = windows[len(windows) // 2], windows[-1]
        out += ["", f"RSS change over the second half (windows {len(windows) // 2 + 1}"
                f"-{len(windows)}, {middle.requests} -> {last.requests} requests): " + ", ".join(
                    f"{n} {growth(middle.rss_mb[n], last.rss_mb[n]):+.1f} %" for n in names)]
    out += ["", "Checks and targets:"]
    out += [f"  {label:48} {value:>22}   "
            f"{'NOT JUDGED' if ok is None else 'MET' if ok else 'MISSED'}"
            for label, value, ok in checks]
    out += ["", "Notes:"] + [f"  - {n}" for n in notes]
    return out


def chart(windows: list[Window], path: Path) -> str:
    """RSS of every process and p50/p99 over the run, window by window."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (the bench extra has it)"
    if not windows:
        return "chart skipped: no window"
    xs = [w.requests for w in windows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in windows[0].rss_mb:
        left.plot(xs, [w.rss_mb[name] for w in windows], marker="o", label=name)
    left.set_xlabel("requests")
    left.set_ylabel("RSS (MB)")
    left.set_yscale("log")
    left.set_title("resident memory per process")
    left.legend(fontsize=7)
    right.plot(xs, [w.p50_ms for w in windows], marker="o", label="p50")
    right.plot(xs, [w.p99_ms for w in windows], marker="o", label="p99")
    right.set_xlabel("requests")
    right.set_ylabel("ms (client-side, per window)")
    right.set_title("latency over the soak")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path.relative_to(harness.REPO)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--min-seconds", type=float, default=1000.0,
                        help="pace the load to last at least this long (default 1000: "
                        "100 req/s, below this machine's capacity, so the rate is steady)")
    parser.add_argument("--max-seconds", type=float, default=2400.0,
                        help="stop sending after this long even if not done (default 2400: "
                        "room for 100,000 at the ~65 req/s of a busy shared machine)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--trace-memory", action="store_true",
                        help="run the consumers under bench.memprobe (tracemalloc) and print "
                        "what grew between windows (diagnosis; slower)")
    parser.add_argument("--quick", action="store_true",
                        help="5,000 requests in windows of 500, at least 60 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.window, args.min_seconds = 5_000, 500, 60.0
        args.max_seconds = min(args.max_seconds, 600.0)
    return harness.run_stoppable(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
