"""Real Kafka (KRaft) and Redis as local processes, for development and tests.

No Docker needed: Kafka's jars come from Maven Central through
``deploy/kafka/pom.xml`` into a cache directory that later runs reuse, and Redis
is Debian's ``redis-server``. Both bind to 127.0.0.1 on free ports and keep
their data in a temporary directory that is removed when they stop.

``make services`` / ``make services-down`` and the pytest fixtures use this
module; ``python -m ragward.devservices up|down`` is the command line, and
``up --secure`` (``make services SECURE=1``) starts the secured variants of
:mod:`ragward.devsecure` instead: Kafka on SASL_SSL with ACLs, Redis on TLS;
``up --brokers 3`` (``make services BROKERS=3``) a three-broker KRaft cluster
(:mod:`ragward.devcluster`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_VERSION = "3.9.1"
STATE_FILE = REPO_ROOT / ".services" / "state.json"

_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


class ServiceError(RuntimeError):
    """A local service could not be fetched, started or reached."""


@dataclass
class RunningService:
    name: str
    address: str  # "127.0.0.1:PORT" for Kafka, "redis://127.0.0.1:PORT/0" for Redis
    pid: int
    workdir: str
    # kept so the child is reaped by us, not warned about by the garbage collector
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def state(self) -> dict[str, object]:
        return {"name": self.name, "address": self.address, "pid": self.pid,
                "workdir": self.workdir}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cache_root() -> Path:
    base = os.environ.get("RAGWARD_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "ragward" if base else Path.home() / ".cache" / "ragward"


# ---------------------------------------------------------------- Kafka


def kafka_libs(fetch: bool = True) -> Path:
    """Return the directory of Kafka's jars, fetching them with Maven when absent."""
    libs = _cache_root() / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if not fetch:
        raise ServiceError(f"Kafka jars not found in {libs}")
    if shutil.which("mvn") is None:
        raise ServiceError("Kafka jars are unavailable: 'mvn' is not installed to fetch them")
    if shutil.which("java") is None:
        raise ServiceError("Kafka cannot run: 'java' is not installed")
    print(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs}",
          file=sys.stderr)
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={libs}"],
        capture_output=True, text=True, check=False,
    )
    jars = list(libs.glob("kafka_2.13-*.jar"))
    if result.returncode != 0 or not jars:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        shutil.rmtree(libs, ignore_errors=True)
        raise ServiceError(
            "Kafka jars are unavailable: 'mvn dependency:copy-dependencies' failed: "
            + " | ".join(tail)
        )
    marker.touch()
    return libs


def kafka_properties(
    workdir: Path, port: int, controller_port: int, overrides: Mapping[str, str] | None = None
) -> Path:
    """server.properties of a single KRaft node; ``overrides`` replace or add keys (the
    secured variant's listeners, TLS, SASL and authorizer: :mod:`ragward.devsecure`)."""
    config = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(workdir / "data"),
        "num.partitions": "3",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.flush.interval.messages": "9223372036854775807",
        **(overrides or {}),
    }
    props = workdir / "server.properties"
    props.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
    (workdir / "log4j.properties").write_text(_LOG4J)
    return props


def _java(libs: Path, workdir: Path, *args: str) -> list[str]:
    return [
        "java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{workdir / 'log4j.properties'}",
        "-cp", f"{libs}/*", *args,
    ]


async def _kafka_round_trip(bootstrap: str, client: Mapping[str, Any] | None = None) -> None:
    """Produce and consume one record; ``client`` holds the clients' security keywords."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    client = client or {}
    topic = f"ragward-ready-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, **client)
    try:
        await producer.start()
        await producer.send_and_wait(topic, b"ping")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                **client)
    try:
        await consumer.start()
        message = await asyncio.wait_for(consumer.getone(), timeout=10)
        if message.value != b"ping":
            raise ServiceError("Kafka round trip returned a different message")
    finally:
        await consumer.stop()


def start_kafka(timeout: float = 90.0) -> RunningService:
    """Start one KRaft broker+controller; ready once a produce/consume round trip works."""
    libs = kafka_libs()
    workdir = Path(tempfile.mkdtemp(prefix="ragward-kafka-"))
    port, controller_port = free_port(), free_port()
    props = kafka_properties(workdir, port, controller_port)
    format_storage(libs, workdir, props)
    return launch_kafka(libs, workdir, props, port, timeout)


def new_cluster_id() -> str:
    """A KRaft cluster id (base64 of a UUID) that the storage tool cannot take for a flag."""
    cluster_id = "-"
    while cluster_id.startswith("-"):  # the storage tool would read a leading "-" as a flag
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


def format_storage(libs: Path, workdir: Path, props: Path, *extra: str,
                   cluster_id: str | None = None) -> None:
    """Format a fresh node's KRaft storage (``extra``: e.g. ``--add-scram`` users); the
    nodes of one cluster share ``cluster_id``."""
    cluster_id = cluster_id or new_cluster_id()
    fmt = subprocess.run(
        _java(libs, workdir, "kafka.tools.StorageTool", "format", "-t", cluster_id,
              "-c", str(props), *extra),
        capture_output=True, text=True, check=False,
    )
    if fmt.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ServiceError(f"formatting KRaft storage failed: {fmt.stderr.strip()[-400:]}")


def restart_kafka(service: RunningService, timeout: float = 90.0) -> RunningService:
    """Start a broker stopped with ``stop(service, keep_data=True)`` again: same port,
    same data directory, so topics, offsets and producer state survive (fault tests)."""
    if _alive(service.pid):
        raise ServiceError(f"Kafka (pid {service.pid}) is still running")
    workdir = Path(service.workdir)
    props = workdir / "server.properties"
    if not props.exists():
        raise ServiceError(f"{props} is gone; was the broker stopped with keep_data=True?")
    port = int(service.address.rsplit(":", 1)[1])
    return launch_kafka(kafka_libs(), workdir, props, port, timeout)


def launch_kafka(
    libs: Path, workdir: Path, props: Path, port: int, timeout: float,
    client: Mapping[str, Any] | None = None,
) -> RunningService:
    """Run the node; ready once a round trip with ``client``'s security keywords works."""
    service = spawn_kafka(libs, workdir, props, port)
    await_kafka([service], timeout, client)
    return service


def spawn_kafka(libs: Path, workdir: Path, props: Path, port: int) -> RunningService:
    """Start a node's process without waiting for it (a cluster's nodes wait for each
    other's votes: start them all, then :func:`await_kafka`)."""
    with (workdir / "kafka.log").open("ab") as log:
        proc = subprocess.Popen(
            _java(libs, workdir, "kafka.Kafka", str(props)),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return RunningService("kafka", f"127.0.0.1:{port}", proc.pid, str(workdir), proc)


def await_kafka(nodes: list[RunningService], timeout: float,
                client: Mapping[str, Any] | None = None) -> None:
    """Wait until every node listens and a round trip through all of them works; stop
    them all and raise :class:`ServiceError` if one exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    bootstrap = ",".join(n.address for n in nodes)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for node in nodes:
            if node.process is not None and node.process.poll() is not None:
                tail = (Path(node.workdir) / "kafka.log").read_text(errors="replace")[-800:]
                for other in nodes:
                    stop(other)
                raise ServiceError(f"Kafka exited with code {node.process.returncode}: {tail}")
        if not all(_port_open(int(n.address.rsplit(":", 1)[1])) for n in nodes):
            time.sleep(0.2)
            continue
        try:
            asyncio.run(_kafka_round_trip(bootstrap, client))
            return
        except Exception as exc:  # not up yet: keep polling until the deadline
            last_error = exc
            time.sleep(0.5)
    for node in nodes:
        stop(node)
    raise ServiceError(f"Kafka did not become ready in {timeout:.0f}s: {last_error!r}")


# ---------------------------------------------------------------- Redis


def redis_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Debian's redis-server with apt-get", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], check=False,
                       capture_output=True, env=env)
        if Path("/usr/bin/redis-server").exists():
            return "/usr/bin/redis-server"
    raise ServiceError("redis-server is not installed (apt-get install redis-server)")


def start_redis(
    timeout: float = 20.0, port: int | None = None, extra: Sequence[str] = ()
) -> RunningService:
    """Start redis-server on a free loopback port (or ``port``), without persistence;
    ``extra`` arguments are added to its command line.

    Passing the port of a stopped instance restarts Redis at the same address,
    empty: tests use it to take Redis away from a running client and bring it back.
    """
    binary = redis_binary()
    workdir = Path(tempfile.mkdtemp(prefix="ragward-redis-"))
    port = port or free_port()
    with (workdir / "redis.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes", *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    service = RunningService("redis", f"redis://127.0.0.1:{port}/0", proc.pid, str(workdir), proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(service)
            raise ServiceError(f"redis-server exited with code {proc.returncode}")
        if _redis_ping(port):
            return service
        time.sleep(0.05)
    stop(service)
    raise ServiceError(f"redis-server did not answer PING in {timeout:.0f}s")


def _port_open(port: int) -> bool:
    with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# ---------------------------------------------------------------- lifecycle


def stop(service: RunningService, timeout: float = 15.0, *, keep_data: bool = False) -> None:
    """Stop the process group cleanly (SIGTERM, then SIGKILL) and delete its data,
    unless ``keep_data`` (then :func:`restart_kafka` can start it again)."""
    with suppress(ProcessLookupError):
        os.killpg(service.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(service.pid):
            time.sleep(0.1)
        if _alive(service.pid):
            os.killpg(service.pid, signal.SIGKILL)
    if service.process is not None:
        with suppress(subprocess.TimeoutExpired):
            service.process.wait(timeout=5)
    if not keep_data:
        shutil.rmtree(service.workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    with suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def running(name: str) -> Iterator[RunningService]:
    service = start_kafka() if name == "kafka" else start_redis()
    try:
        yield service
    finally:
        stop(service)


def up(secure: bool = False, brokers: int = 1) -> int:
    """Start Kafka and Redis, or (``secure``) their secured variants (:mod:`ragward.devsecure`),
    or (``brokers=3``) a three-broker cluster (:mod:`ragward.devcluster`); print the exports."""
    if STATE_FILE.exists():
        print("services already running; `make services-down` first", file=sys.stderr)
        return 1
    if secure:
        from ragward.devsecure import up_secure

        services, lines = up_secure()
    elif brokers > 1:
        from ragward.devcluster import up_cluster

        services, lines = up_cluster()
    else:
        services = [start_kafka(), start_redis()]
        kafka, redis = services
        lines = [f"export RAGWARD_KAFKA_BOOTSTRAP={kafka.address}",
                 f"export RAGWARD_REDIS_URL={redis.address}"]
    STATE_FILE.parent.mkdir(exist_ok=True)
    STATE_FILE.write_text(json.dumps([s.state() for s in services]))
    STATE_FILE.chmod(0o600)
    print("\n".join(lines))
    return 0


def down() -> int:
    if not STATE_FILE.exists():
        print("no services running", file=sys.stderr)
        return 0
    for entry in json.loads(STATE_FILE.read_text()):
        stop(RunningService(**entry))
        print(f"stopped {entry['name']} (pid {entry['pid']})", file=sys.stderr)
    STATE_FILE.unlink()
    return 0


def fetch() -> int:
    """Fetch Kafka's jars now (``make test`` does, so a missing Maven fails loudly first)."""
    kafka_libs()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands: dict[str, Callable[[], int]] = {
        "up": up, "down": down, "fetch": fetch, "up --secure": lambda: up(secure=True),
        "up --brokers 3": lambda: up(brokers=3),
    }
    command = " ".join(args)
    if command not in commands:
        print("usage: python -m ragward.devservices up [--secure|--brokers 3]|down|fetch",
              file=sys.stderr)
        return 2
    try:
        return commands[command]()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
