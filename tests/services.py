"""Where the test session gets its Kafka and Redis from, in order of preference.

1. ``RAGWARD_TEST_KAFKA`` / ``RAGWARD_TEST_REDIS``: services already running.
2. testcontainers, when a Docker engine answers.
3. Local processes (:mod:`ragward.devservices`): Kafka jars from Maven Central,
   Debian's redis-server.

With ``CI=true`` a service that cannot start fails the run; it never skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ragward import devservices


def docker_available() -> bool:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        return False
    import warnings

    import docker  # installed with testcontainers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=2)
        except Exception:  # no engine, no permission: both mean "not available"
            return False
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()


@contextmanager
def kafka_service() -> Iterator[str]:
    if address := os.environ.get("RAGWARD_TEST_KAFKA"):
        yield address
    elif docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        with devservices.running("kafka") as service:
            yield service.address


@contextmanager
def redis_service() -> Iterator[str]:
    if url := os.environ.get("RAGWARD_TEST_REDIS"):
        yield url
    elif docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer() as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
    else:
        with devservices.running("redis") as service:
            yield service.address
