"""Clusters as local processes, as users run them: a three-broker KRaft Kafka and a
Redis Cluster.

The same jars and helpers as :mod:`ragward.devservices`; each node is broker and
controller (KRaft combined mode) with its own loopback ports and data directory,
and the three vote for each other. Broker-wide ``default.replication.factor=3``
and ``min.insync.replicas=2``: every topic (ragward's, created with
``RAGWARD_KAFKA_REPLICATION_FACTOR=3``, or auto-created) survives one broker, and
an ``acks=all`` write is refused — not silently acknowledged by one copy — once
two are gone. Failure detection is faster than Kafka's defaults (a broker is
fenced after 3 s without a heartbeat instead of 9 s) so that a fault test's
leader election takes seconds; nothing else differs from a production cluster.

``make services BROKERS=3`` / ``python -m ragward.devservices up --brokers 3``
start one for development; the fault tests start their own.

The Redis Cluster (:func:`start_redis_cluster`): primaries of Debian's
``redis-server --cluster-enabled yes`` joined by ``redis-cli --cluster create``,
for the quota and cache tests on a cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from ragward.devservices import (
    RunningService,
    ServiceError,
    await_kafka,
    format_storage,
    free_port,
    kafka_libs,
    kafka_properties,
    new_cluster_id,
    spawn_kafka,
    start_redis,
    stop,
)

REPLICATION = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
}


@dataclass
class KafkaCluster:
    """The running nodes; node ``i`` (1-based, Kafka's ``node.id``) is ``nodes[i - 1]``."""

    nodes: list[RunningService]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> RunningService:
        return self.nodes[node_id - 1]

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (no clean shutdown, no leadership hand-over); its data stays."""
        node = self.node(node_id)
        with suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        if node.process is not None:
            node.process.wait(timeout=10)

    def restart(self, node_ids: list[int], timeout: float = 120.0) -> None:
        """Start killed nodes again on their ports and data; ready once a round trip
        through the whole cluster works."""
        libs = kafka_libs()
        for node_id in node_ids:
            old = self.node(node_id)
            workdir = Path(old.workdir)
            port = int(old.address.rsplit(":", 1)[1])
            self.nodes[node_id - 1] = spawn_kafka(libs, workdir, workdir / "server.properties",
                                                  port)
        await_kafka(self.nodes, timeout)

    def stop(self) -> None:
        for node in self.nodes:
            stop(node)


def start_kafka_cluster(timeout: float = 150.0) -> KafkaCluster:
    """Start three KRaft nodes voting for each other (:data:`REPLICATION` assumes three);
    ready once a produce/consume round trip through the cluster works."""
    size = 3
    libs = kafka_libs()
    cluster_id = new_cluster_id()
    ports = [(free_port(), free_port()) for _ in range(size)]
    voters = ",".join(f"{i}@127.0.0.1:{controller}"
                      for i, (_, controller) in enumerate(ports, start=1))
    nodes = []
    try:
        for node_id, (port, controller) in enumerate(ports, start=1):
            workdir = Path(tempfile.mkdtemp(prefix=f"ragward-kafka{node_id}-"))
            props = kafka_properties(workdir, port, controller, {
                "node.id": str(node_id), "controller.quorum.voters": voters, **REPLICATION})
            format_storage(libs, workdir, props, cluster_id=cluster_id)
            nodes.append(spawn_kafka(libs, workdir, props, port))
    except Exception:
        for node in nodes:
            stop(node)
        raise
    await_kafka(nodes, timeout)
    return KafkaCluster(nodes)


def up_cluster() -> tuple[list[RunningService], list[str]]:
    """For ``devservices up --brokers 3``: the cluster and Redis, and the exports."""
    cluster = start_kafka_cluster()
    redis = start_redis()
    return [*cluster.nodes, redis], [
        f"export RAGWARD_KAFKA_BOOTSTRAP={cluster.bootstrap}",
        f"export RAGWARD_KAFKA_REPLICATION_FACTOR={len(cluster.nodes)}",
        f"export RAGWARD_REDIS_URL={redis.address}",
    ]


@dataclass
class RedisClusterService:
    """Primaries of a local Redis Cluster; ``url`` is what ``RAGWARD_REDIS_URL`` takes."""

    nodes: list[RunningService]

    @property
    def ports(self) -> list[int]:
        return [int(node.address.rsplit(":", 1)[1].split("/")[0]) for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)


def start_redis_cluster(primaries: int = 3, timeout: float = 30.0) -> RedisClusterService:
    """A Redis Cluster of ``primaries`` nodes on loopback (no replicas), joined with
    ``redis-cli --cluster create``; returns once every node reports ``cluster_state:ok``.

    Each node gets its own free port for the cluster bus (``--cluster-port``) rather
    than Redis' default of port + 10000, which may be taken or out of range."""
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    if not Path(cli).exists():
        raise ServiceError("redis-cli is not installed (apt-get install redis-tools)")
    nodes: list[RunningService] = []
    try:
        for _ in range(primaries):
            nodes.append(start_redis(timeout, extra=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--cluster-port", str(free_port()),
            ]))
        cluster = RedisClusterService(nodes)
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if created.returncode != 0:
            raise ServiceError("redis-cli --cluster create failed: "
                               + (created.stdout + created.stderr).strip()[-300:])
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(cli, port) for port in cluster.ports):
            if time.monotonic() > deadline:
                raise ServiceError(f"the Redis Cluster did not report ok in {timeout:.0f}s")
            time.sleep(0.1)
        return cluster
    except BaseException:
        for node in nodes:
            stop(node)
        raise


def _cluster_ok(cli: str, port: int) -> bool:
    info = subprocess.run([cli, "-p", str(port), "cluster", "info"], capture_output=True,
                          text=True, timeout=5, check=False)
    return "cluster_state:ok" in info.stdout


@contextmanager
def running_redis_cluster(primaries: int = 3) -> Iterator[RedisClusterService]:
    cluster = start_redis_cluster(primaries)
    try:
        yield cluster
    finally:
        for node in cluster.nodes:
            stop(node)
