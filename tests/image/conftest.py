"""The image built by the air-gapped path, and docker-compose.yml's ragward services running it.

Run by ``make test-image`` (and CI), not by ``make test``: a cold build takes minutes.
The containers use the host's network, the test session's Redis and PostgreSQL, and a Kafka
broker of the image tests' own (the drain test freezes it).
What differs from ``docker compose up`` (host networking has one port space and no service
names) is overridden, and only that: the Kafka, Redis and rag-core addresses, each server's
listen port, and RAGWARD_AUDIT_DSN on the gateway and the audit consumer (the gateway serves
/v1/audit from the store the audit consumer writes only when they share PostgreSQL).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ragward import devservices
from ragward.devservices import RunningService, free_port
from telemetry.event_keys import write_pair
from tests.conftest import TEST_SECRET, _say_past_capture
from tests.image.compose import Service, services, wait_healthy
from tests.image.engine import docker_engine
from tests.services import fail_or_skip

REPO = Path(__file__).resolve().parents[2]
IMAGE_TAG = "image-test"
CONSUMERS = ("consumer-metrics", "consumer-alerts", "consumer-audit")


@pytest.fixture(scope="session")
def docker_host(pytestconfig: pytest.Config) -> Iterator[str]:
    with docker_engine(_say_past_capture(pytestconfig)) as host:
        yield host


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=docker_host, timeout=120)
    yield client
    client.close()


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    seconds: float


@pytest.fixture(scope="session")
def image(docker_host: str, docker_client: docker.DockerClient,
          pytestconfig: pytest.Config) -> BuiltImage:
    """``deploy/image-offline.sh`` run for real: the tag docker-compose.yml names."""
    tag = f"ragward:{IMAGE_TAG}"
    started = time.monotonic()
    result = subprocess.run(["deploy/image-offline.sh", tag], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "DOCKER_HOST": docker_host},
                            timeout=3000, check=False)
    seconds = time.monotonic() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    size_mb = docker_client.images.get(tag).attrs["Size"] / 1e6
    _say_past_capture(pytestconfig)(
        f"ragward image tests: built {tag} in {seconds:.1f} s, {size_mb:.0f} MB")
    return BuiltImage(tag, seconds)


@pytest.fixture(scope="session")
def image_kafka() -> Iterator[RunningService]:
    """A Kafka broker (a local process) of the image tests' own, not the session's: the drain
    test freezes it (SIGSTOP) to make the containerised gateway spool."""
    try:
        service = devservices.start_kafka()
    except devservices.ServiceError as exc:
        fail_or_skip("the image tests' Kafka", exc)
    try:
        yield service
    finally:
        devservices.stop(service)


@dataclass
class Stack:
    """The running containers, by compose service name, and what the test needs of them."""

    containers: dict[str, Any]
    services: dict[str, Service]
    ports: dict[str, int]
    healthy_s: dict[str, float]
    kafka: RunningService
    # Start one more of ``services`` as the fixture does (gateway-2), or a one-off with a command.
    start: Callable[..., Any]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def gateway_url(self) -> str:
        return self.url("gateway-1")


# Started by the fixture, in compose's order. gateway-2 is prepared (its own volume, port and
# overrides) but started only by the test that needs a second gateway.
STARTED = ("ingest", "rag-core", "gateway-1", *CONSUMERS)
GATEWAYS = ("gateway-1", "gateway-2")


@pytest.fixture(scope="module")
def stack(image: BuiltImage, docker_client: docker.DockerClient, image_kafka: RunningService,
          redis_url: str, postgres_dsn: str, pytestconfig: pytest.Config,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """ingest, rag-core, gateway-1 and the three consumers, started in compose's order."""
    run_id = uuid.uuid4().hex[:8]
    # The event keys as env.example makes them: the gateway's PEM, the one-line key set.
    keys = tmp_path_factory.mktemp("event-keys")
    private = write_pair(keys, Ed25519PrivateKey.generate(), "gateway-1", keys / "set.json")
    variables = {"IMAGE_TAG": IMAGE_TAG, "RAGWARD_JWT_SECRET": TEST_SECRET,
                 "RAGWARD_INTERNAL_TOKEN": secrets.token_urlsafe(32),
                 "RAGWARD_AUDIT_HASH_KEY": secrets.token_urlsafe(32),
                 "RAGWARD_EVENT_SIGNING_KEY": private.read_text(),
                 "RAGWARD_EVENT_KEYS": json.dumps(json.loads((keys / "set.json").read_text()),
                                                  separators=(",", ":")),
                 "RAGWARD_EVENT_SIGNING_KEY_ID": "gateway-1"}
    spec = services(variables)
    wanted = (*STARTED, "gateway-2")
    volumes = {v.split(":")[0] for name in wanted for v in spec[name].get("volumes", [])}
    engine_volumes = {v: docker_client.volumes.create(f"ragward-{run_id}-{v}").name
                      for v in volumes}
    chosen = {name: Service(name, spec[name], engine_volumes) for name in wanted}
    ports = {name: free_port() for name in wanted if name != "ingest"}
    hosts = {"RAGWARD_KAFKA_BOOTSTRAP": image_kafka.address, "RAGWARD_REDIS_URL": redis_url}
    overrides = {
        "ingest": hosts,
        "rag-core": {**hosts, "RAGWARD_RAG_CORE_PORT": str(ports["rag-core"])},
        **{name: {**hosts, "RAGWARD_PORT": str(ports[name]),
                  "RAGWARD_RAG_CORE_URL": f"http://127.0.0.1:{ports['rag-core']}",
                  "RAGWARD_AUDIT_DSN": postgres_dsn} for name in GATEWAYS},
        **{name: {**hosts, "RAGWARD_CONSUMER_PORT": str(ports[name])} for name in CONSUMERS},
    }
    overrides["consumer-audit"]["RAGWARD_AUDIT_DSN"] = postgres_dsn
    containers: dict[str, Any] = {}
    one_offs: list[Any] = []

    def start(name: str, command: list[str] | None = None) -> Any:
        """Service ``name`` as the file runs it; with ``command``, a one-off container of that
        service (its user, mounts, environment) running ``command`` instead."""
        if command is None:
            containers[name] = chosen[name].run(docker_client, f"ragward-{run_id}-{name}", {},
                                                overrides[name])
            return containers[name]
        one_offs.append(chosen[name].run(docker_client,
                                         f"ragward-{run_id}-{name}-{len(one_offs)}", {},
                                         overrides[name], command))
        return one_offs[-1]

    say = _say_past_capture(pytestconfig)
    # Each started service is watched from its start by two threads: one polls its health check's
    # URL from the host, one polls the engine's health status (the engine keeps only the last
    # five check results, so its log cannot tell afterwards when the first one passed).
    pool = concurrent.futures.ThreadPoolExecutor(2 * len(STARTED))
    answering: dict[str, concurrent.futures.Future[float | None]] = {}
    healthy_at: dict[str, concurrent.futures.Future[float]] = {}
    done = threading.Event()  # the fixture is over: pollers still running give up

    def start_timed(name: str) -> Any:
        started = time.monotonic()
        container = start(name)
        answering[name] = pool.submit(_first_answer_s, chosen[name].health_url(ports[name]),
                                      started, 300, done)
        healthy_at[name] = pool.submit(_healthy_s, container, started, 300)
        return container

    try:
        for name in CONSUMERS:  # they depend only on Kafka (kafka-init in compose)
            start_timed(name)
        ingest_started = time.monotonic()
        ingest = start("ingest")
        assert ingest.wait(timeout=600)["StatusCode"] == 0, ingest.logs()[-3000:]
        ingest_s = time.monotonic() - ingest_started
        start_timed("rag-core")
        healthy_at["rag-core"].result()  # the gateway depends on rag-core being healthy
        start_timed("gateway-1")
        healthy = {name: future.result() for name, future in healthy_at.items()}
        first = {name: future.result() for name, future in answering.items()}
        say(f"ragward image tests: ingest job {ingest_s:.1f} s; start to answering its health "
            "check (polled every 0.1 s) / to healthy per the engine (checks every interval): " +
            ", ".join(f"{name} {first[name] or float('nan'):.1f} s / {seconds:.1f} s"
                      for name, seconds in healthy.items()))
        yield Stack(containers, chosen, ports, healthy, image_kafka, start)
    finally:
        done.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for container in [*containers.values(), *one_offs]:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        for volume in engine_volumes.values():
            docker_client.volumes.get(volume).remove(force=True)


def _first_answer_s(url: str, started: float, timeout_s: float,
                    done: threading.Event) -> float | None:
    """Seconds from ``started`` until ``url`` first answers 200, polled every 0.1 s."""
    while time.monotonic() < started + timeout_s and not done.is_set():
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.1)
    return None


def _healthy_s(container: Any, started: float, timeout_s: float) -> float:
    """Seconds from ``started`` until the engine reports the container healthy."""
    wait_healthy(container, timeout_s)
    return time.monotonic() - started


def exec_python(container: Any, code: str) -> tuple[int, str]:
    """Run ``python -c code`` inside the running container as its own user."""
    result = container.exec_run(["python", "-c", code])
    return result.exit_code, result.output.decode(errors="replace")
