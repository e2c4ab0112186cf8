"""Where the test session gets its Kafka and Redis from, decided once per service.

1. ``RAGWARD_TEST_KAFKA`` / ``RAGWARD_TEST_REDIS`` / ``RAGWARD_TEST_REDIS_CLUSTER`` (a
   ``redis+cluster://`` URL): services already running.
2. testcontainers, when asked (``RAGWARD_TEST_DOCKER=1``), or when a Docker engine
   answers *and* the images are present or can be pulled within
   ``RAGWARD_TEST_DOCKER_PULL_TIMEOUT_S`` (default 20 s). An engine without a
   reachable registry is common (air-gapped machines); a pull that fails must not
   turn into one error per test, so it falls back instead.
3. Local processes (:mod:`ragward.devservices`): Kafka jars from Maven Central,
   Debian's redis-server. ``RAGWARD_TEST_DOCKER=0`` goes here directly.

The Redis Cluster (three primaries, joined by ``redis-cli --cluster create``) always
runs as local processes: a cluster in containers would announce addresses the tests
cannot reach. One line on stderr says which was chosen and why. With ``CI=true`` a service that
cannot start fails the run; it never skips.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from ragward import devcluster, devservices

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REDIS_IMAGE = "redis:7.4"


@dataclass(frozen=True)
class Choice:
    docker: bool
    reason: str


Say = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _docker_client(timeout: float) -> Any | None:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        return None
    import docker  # installed with testcontainers

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # no engine, no permission: both mean "not available"
        return None
    return client


def _pull_problem(client: Any, image: str, timeout: float) -> str | None:
    """None when ``image`` is present or was pulled within ``timeout`` seconds."""
    import docker

    try:
        client.images.get(image)
        return None
    except docker.errors.DockerException:  # ImageNotFound and friends: try to pull
        pass
    problem: list[str] = []

    def pull() -> None:
        try:
            client.images.pull(image)
        except Exception as exc:  # the reason goes into the one log line
            problem.append(str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__)

    puller = threading.Thread(target=pull, daemon=True)
    puller.start()
    puller.join(timeout)
    if puller.is_alive():
        return f"{image} is not present and did not pull within {timeout:g} s"
    if problem:
        return f"{image} is not present and cannot be pulled ({problem[0]})"
    return None


def choose(image: str) -> Choice:
    """Decide between testcontainers and local processes for a service in ``image``."""
    flag = os.environ.get("RAGWARD_TEST_DOCKER", "")
    if flag == "1":
        return Choice(True, "RAGWARD_TEST_DOCKER=1")
    if flag == "0":
        return Choice(False, "RAGWARD_TEST_DOCKER=0")
    timeout = float(os.environ.get("RAGWARD_TEST_DOCKER_PULL_TIMEOUT_S", "20"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        client = _docker_client(timeout)
        if client is None:
            return Choice(False, "no Docker engine answers")
        try:
            images = [image]
            if os.environ.get("TESTCONTAINERS_RYUK_DISABLED", "").lower() not in ("1", "true"):
                from testcontainers.core.config import testcontainers_config

                images.append(testcontainers_config.ryuk_image)
            for needed in images:
                if problem := _pull_problem(client, needed, timeout):
                    return Choice(False, f"a Docker engine answers, but {problem}")
        finally:
            client.close()
    return Choice(True, f"a Docker engine answers and {', '.join(images)} are available")


def _announce(say: Say, what: str, choice: Choice) -> None:
    where = "testcontainers" if choice.docker else "local processes (ragward.devservices)"
    say(f"ragward tests: {what} from {where}: {choice.reason}")


@contextmanager
def kafka_service(say: Say = _stderr) -> Iterator[str]:
    if address := os.environ.get("RAGWARD_TEST_KAFKA"):
        say(f"ragward tests: Kafka from RAGWARD_TEST_KAFKA={address}")
        yield address
        return
    choice = choose(KAFKA_IMAGE)
    _announce(say, "Kafka", choice)
    if choice.docker:
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        with devservices.running("kafka") as service:
            yield service.address


@contextmanager
def redis_service(say: Say = _stderr) -> Iterator[str]:
    if url := os.environ.get("RAGWARD_TEST_REDIS"):
        say("ragward tests: Redis from RAGWARD_TEST_REDIS")
        yield url
        return
    choice = choose(REDIS_IMAGE)
    _announce(say, "Redis", choice)
    if choice.docker:
        from testcontainers.redis import RedisContainer

        with RedisContainer(REDIS_IMAGE) as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
    else:
        with devservices.running("redis") as service:
            yield service.address


@contextmanager
def redis_cluster_service(say: Say = _stderr) -> Iterator[str]:
    """A ``redis+cluster://`` URL of a three-primary Redis Cluster."""
    if url := os.environ.get("RAGWARD_TEST_REDIS_CLUSTER"):
        say("ragward tests: Redis Cluster from RAGWARD_TEST_REDIS_CLUSTER")
        yield url
        return
    say("ragward tests: Redis Cluster from local processes (ragward.devservices)")
    with devcluster.running_redis_cluster() as cluster:
        yield cluster.url


def fail_or_skip(what: str, exc: Exception) -> NoReturn:
    """A service the tests need did not start: in CI (or with RAGWARD_REQUIRE_SERVICES=1)
    that is a failure, never a silent skip; on a developer's machine, a skip."""
    if os.environ.get("CI") == "true" or os.environ.get("RAGWARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} could not start: {exc}", pytrace=False)
    pytest.skip(f"{what} unavailable: {exc}")
