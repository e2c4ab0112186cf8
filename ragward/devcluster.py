"""A three-broker KRaft cluster as local processes: Kafka as users run it.

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
"""

from __future__ import annotations

import os
import signal
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ragward.devservices import (
    RunningService,
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
