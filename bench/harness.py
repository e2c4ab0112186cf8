"""What the benchmarks share: processes, /proc accounting, readiness, Kafka, LiteLLM.

Every benchmark starts its parts as separate processes on 127.0.0.1 and stops them
(process groups, ``try/finally``, SIGTERM too: :func:`run_stoppable`); CPU is read
from ``/proc`` (utime + stime of a process tree), so the figures need no psutil.
Configuration handed to ragward's processes is named by :class:`ragward.settings.Settings`
fields (:func:`ragward_env`), never by hand-written variable names or topic literals.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
OUT = BENCH / "out"
PY = sys.executable
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_PIN = "1.108.7"  # what pip resolves here (PyPI here); 1.82.7/1.82.8 were compromised
LITELLM_BAD = {"1.82.7", "1.82.8"}
# Without opentelemetry-sdk (in litellm's "proxy-runtime" extra, not in "proxy"), 1.108.7
# retries a failing import of litellm.integrations.otel on every request
# (user_api_key_auth._seed_request_destinations): ~20 % of its CPU. Installed so that
# LiteLLM is measured at its best, not with that defect.
LITELLM_EXTRAS = ["opentelemetry-sdk"]
LITELLM_CONFIG = BENCH / "litellm_config.yaml"
MASTER_KEY = "sk-bench-master"  # as in bench/litellm_config.yaml
SECRET = "bench-jwt-secret-0123456789abcdef0123456789"  # noqa: S105 (bench only)
CLK = os.sysconf("SC_CLK_TCK")
T0 = time.monotonic()


def module_command(module: str, *args: str) -> list[str]:
    """The command line running ``bench.<module>`` (run from the repository: ``cwd=REPO``)."""
    return [PY, "-m", f"bench.{module}", *args]


def ragward_env(**fields: object) -> dict[str, str]:
    """``RAGWARD_*`` variables for ragward's processes, from :class:`Settings` field names
    (a misspelt field fails here, not as a silently ignored variable)."""
    from ragward.settings import Settings

    unknown = set(fields) - set(Settings.model_fields)
    if unknown:
        raise ValueError(f"not ragward settings: {sorted(unknown)}")
    return {f"RAGWARD_{name.upper()}": str(value) for name, value in fields.items()}


def gateway_env(*, rag_core_url: str, port: int, data_dir: Path, redis_url: str,
                kafka_bootstrap: str | None, **more: object) -> dict[str, str]:
    """The environment of a ``ragward gateway`` with every control on: HS256 JWT with
    :data:`SECRET`, Redis quota with limits so high they never reject (``more`` may lower
    them), Redis cache, Kafka audit when ``kafka_bootstrap`` is given; warnings only."""
    fields: dict[str, object] = {
        "rag_core_url": rag_core_url, "jwt_secret": SECRET, "port": port, "host": "127.0.0.1",
        "log_level": "warning", "data_dir": data_dir, "redis_url": redis_url,
        "quota_rpm": 10_000_000, "quota_tokens_per_day": 1_000_000_000_000,
    }
    if kafka_bootstrap is not None:
        fields["kafka_bootstrap"] = kafka_bootstrap
    return child_env(**ragward_env(**{**fields, **more}))


def default_setting(name: str) -> Any:
    """A :class:`Settings` field's default (topics, linger), so no literal repeats it."""
    from ragward.settings import Settings

    return Settings.model_fields[name].default


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from "state" (3rd) on


def process_tree(root: int) -> list[int]:
    """root and all its descendants (scan of /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_ticks(roots: list[int]) -> int:
    """utime + stime (clock ticks) of every process in the trees under ``roots``."""
    total = 0
    for root in roots:
        for pid in process_tree(root):
            fields = _stat_fields(pid)
            if fields:
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def machine_busy_ticks() -> int:
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(parts[:8]) - parts[3] - parts[4]  # minus idle and iowait


def own_ticks() -> int:
    """CPU of this script and of its waited-for children (wrk, the paced generator)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return round((me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime) * CLK)


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class Processes:
    """Everything started here; stopped (process groups) in ``close``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.services: list[Any] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=REPO)
        self.procs.append((name, proc))
        return proc

    def close(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for name, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop on SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        from ragward import devservices

        for service in self.services:
            devservices.stop(service)


def stop_and_keep_logs(procs: Processes, workdir: Path, logs: Path) -> None:
    """Stop every process, keep their logs in ``logs`` (replacing the last run's), and
    remove the run's working directory."""
    say("stopping everything")
    procs.close()
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    for log in workdir.glob("*.log"):
        shutil.copy(log, logs / log.name)
    shutil.rmtree(workdir, ignore_errors=True)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAGWARD_", "LITELLM_", "OPENAI_"))}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 5.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(name: str, proc: subprocess.Popen[bytes], url: str, timeout: float,
               logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (logs / f"{name}.log").read_text(errors="replace")[-1500:]
            raise SystemExit(f"{name} exited with code {proc.returncode}:\n{tail}")
        try:
            if http(url, timeout=1.0)[0] < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{name} not ready at {url} after {timeout:.0f}s (log: {logs}/{name}.log)")


def free_port() -> int:
    from ragward.devservices import free_port as pick

    return pick()


def ensure_litellm() -> Path:
    """bench/.venv-litellm with litellm[proxy]==LITELLM_PIN (installed once, from PyPI)."""
    binary = LITELLM_VENV / "bin" / "litellm"
    python = LITELLM_VENV / "bin" / "python"
    uv = shutil.which("uv") or str(Path(PY).parent / "uv")

    def install(*packages: str) -> None:
        if Path(uv).exists():
            subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *packages],
                           check=True)
        else:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)

    if not binary.exists():
        say(f"installing litellm[proxy]=={LITELLM_PIN} into {LITELLM_VENV} (once; ~1 min)")
        if Path(uv).exists():
            subprocess.run([uv, "venv", "-q", "--python", PY, str(LITELLM_VENV)], check=True)
        else:
            subprocess.run([PY, "-m", "venv", str(LITELLM_VENV)], check=True)
        install(f"litellm[proxy]=={LITELLM_PIN}", *LITELLM_EXTRAS)
    probe = ("import importlib.metadata as m, importlib.util as u; "
             "print(m.version('litellm'), u.find_spec('opentelemetry.sdk') is not None)")
    version, has_otel = subprocess.run([str(python), "-c", probe], capture_output=True,
                                       text=True, check=True).stdout.split()
    if version in LITELLM_BAD:
        raise SystemExit(f"litellm {version} in {LITELLM_VENV} is a compromised release: "
                         "delete the venv")
    if has_otel != "True":
        say(f"adding {' '.join(LITELLM_EXTRAS)} to {LITELLM_VENV}")
        install(*LITELLM_EXTRAS)
    return binary


def spawn_litellm(procs: Processes, binary: Path, port: int,
                  api_base: str) -> subprocess.Popen[bytes]:
    """LiteLLM's proxy, one worker, bench/litellm_config.yaml in front of ``api_base``
    (offline: no telemetry, the bundled cost map). Ready at /health/liveliness (~20 s)."""
    return procs.spawn("litellm", [
        str(binary), "--config", str(LITELLM_CONFIG), "--host", "127.0.0.1",
        "--port", str(port), "--num_workers", "1",
    ], child_env(LITELLM_TELEMETRY_DISABLED="true", LITELLM_LOCAL_MODEL_COST_MAP="True",
                 BENCH_UPSTREAM_API_BASE=api_base))


def start_kafka(procs: Processes, notes: list[str]) -> Any:
    """A Kafka broker (ragward.devservices), stopped with ``procs``; None, with a note,
    when it does not start twice."""
    from ragward import devservices

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(devservices.start_kafka)
        for attempt in (1, 2):  # a cluster id starting with "-" fails formatting
            try:
                kafka = future.result(timeout=120)
                procs.services.append(kafka)
                return kafka
            except Exception as exc:
                say(f"Kafka did not start (attempt {attempt}): {str(exc)[:200]}")
                if attempt == 2:
                    notes.append(f"Kafka did not start ({str(exc)[:200]}): ragward ran "
                                 "on the in-process bus: audit durability NOT measured")
                else:
                    future = pool.submit(devservices.start_kafka)
    return None


@dataclass
class Target:
    name: str
    url: str
    body: str  # printf format: (prefix, counter)
    headers: dict[str, str]
    pid: int  # the proxy (or upstream) process: its tree is what "CPU/request" counts
    extra_pids: dict[str, int] = field(default_factory=dict)  # Redis, Kafka (reported apart)


_phase_counter = 0


def unique_prefix() -> str:
    global _phase_counter
    _phase_counter += 1
    return f"r{os.getpid()}p{_phase_counter}"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


class Meter:
    """CPU of the target's tree, of Redis/Kafka, of the upstream and of everything else."""

    def __init__(self, target: Target, upstream_pid: int, all_pids: list[int]) -> None:
        self.target, self.upstream_pid, self.all_pids = target, upstream_pid, all_pids

    def __enter__(self) -> Meter:
        self.t = time.monotonic()
        self.proxy = cpu_ticks([self.target.pid])
        self.extra = {k: cpu_ticks([p]) for k, p in self.target.extra_pids.items()}
        self.upstream = cpu_ticks([self.upstream_pid])
        self.ours = cpu_ticks(self.all_pids) + own_ticks()
        self.busy = machine_busy_ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.t
        self.d_proxy = cpu_ticks([self.target.pid]) - self.proxy
        self.d_extra = {k: cpu_ticks([p]) - self.extra[k] for k, p in
                        self.target.extra_pids.items()}
        self.d_upstream = cpu_ticks([self.upstream_pid]) - self.upstream
        d_ours = cpu_ticks(self.all_pids) + own_ticks() - self.ours
        d_busy = machine_busy_ticks() - self.busy
        self.other_cores = max(0, d_busy - d_ours) / CLK / self.seconds
        self.load1 = load1()

    def per_request(self, ticks: int, requests: int) -> float:
        return ticks / CLK * 1000 / requests if requests else float("nan")


def idle_cpu(targets: list[Target], services: list[Any], seconds: float = 3.0) -> str:
    """CPU each process burns with no load at all (timers, background tasks, JVM)."""
    pids = {t.name: t.pid for t in targets} | {s.name: s.pid for s in services}
    before = {k: cpu_ticks([p]) for k, p in pids.items()}
    time.sleep(seconds)
    used = {k: (cpu_ticks([p]) - before[k]) / CLK / seconds * 100 for k, p in pids.items()}
    return (f"idle CPU over {seconds:g} s (% of one core): "
            + ", ".join(f"{k} {v:.1f}%" for k, v in used.items()))


def wait_quiet(pid: int, limit_s: float = 10.0) -> None:
    """Let a proxy finish a backlog before the next phase (< 10 % of a core for 0.5 s)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_ticks([pid])
        time.sleep(0.5)
        if (cpu_ticks([pid]) - before) / CLK / 0.5 < 0.10:
            return


async def kafka_ack_samples(bootstrap: str, linger_ms: int, n: int) -> list[float]:
    """Seconds per ``acks=all`` send of a 600-byte record, one at a time, from this
    process: the floor under every request that waits for its audit event's ack."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=linger_ms)
    await producer.start()
    try:
        for _ in range(20):  # topic auto-creation, metadata
            await producer.send_and_wait("ragward.bench.probe", b"x" * 600, key=b"t1")
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await producer.send_and_wait("ragward.bench.probe", b"x" * 600, key=b"t1")
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        await producer.stop()


async def kafka_record_count(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


def fmt(value: float | None, width: int = 7, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}"


def code_version() -> str:
    """The commit measured, and whether the code under test had uncommitted edits."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()
    dirty = git("status", "--porcelain", "--", "gateway", "telemetry", "ragward")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted edits" if dirty else "")


def run_stoppable(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)`` with SIGTERM raising KeyboardInterrupt, so its ``finally`` stops every
    process it started (a benchmark killed by a time-out leaves nothing behind)."""

    def interrupted(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    return run(args)
