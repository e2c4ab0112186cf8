"""The image on a real Docker engine (issue 19): built with no registry, run as compose runs it.

The build is deploy/image-offline.sh (the air-gapped path); the services are
docker-compose.yml's own (tests/image/compose.py reads them from the file); Redis and PostgreSQL
are the test session's, on the host, and Kafka a broker of these tests' own (a host process they
can freeze). Figures (build time, start to healthy, the drain at stop) are printed past pytest's
capture.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from ragward.devservices import RunningService, free_port
from tests.conftest import _say_past_capture
from tests.gateway_harness import bearer
from tests.image.compose import wait_healthy
from tests.image.conftest import (
    CONSUMERS,
    REPO,
    STARTED,
    BuiltImage,
    Stack,
    exec_python,
)

# A cold build (wheelhouse downloaded, base made, every layer) takes many minutes on two cores:
# the session fixture that builds counts against the first test's timeout.
pytestmark = pytest.mark.timeout(3600)

# Queries answered while Kafka is frozen: each spools an audit and a usage event.
SPOOLED_QUERIES = 12

WHEELHOUSE = Path(os.environ.get("WHEELHOUSE_DIR",
                                  Path.home() / ".cache" / "ragward" / "wheelhouse"))


def _pin(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def test_image_installs_exactly_the_wheelhouse(image: BuiltImage,
                                               docker_client: docker.DockerClient) -> None:
    """The offline build succeeds and the image's venv holds exactly the wheelhouse (each wheel a
    version uv.lock pins, for the image's Python), ragward and ragward-pii, and no pip."""
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))")
    out = docker_client.containers.run(image.tag, ["-c", script], entrypoint="python",
                                       network_mode="host", remove=True)
    installed = {_pin(name, version) for name, version in json.loads(out)}
    wheels = {part: {_pin(*w.name.split("-")[:2]) for w in (WHEELHOUSE / part).glob("*.whl")}
              for part in ("locked", "project")}
    exported = (WHEELHOUSE / "locked" / "uv-export.txt").read_text()
    locked = {_pin(*m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", exported, re.M)}
    assert wheels["locked"] <= locked, sorted(wheels["locked"] - locked)
    assert wheels["project"] == {"ragward==0.1.0", "ragward-pii==0.1.0"}
    expected = wheels["locked"] | wheels["project"]
    assert installed == expected, (sorted(installed - expected), sorted(expected - installed))
    assert not any(pin.startswith("pip==") for pin in installed)


def test_public_build_without_its_base_stops_with_the_reason_and_the_way_out(
    docker_host: str, docker_client: docker.DockerClient
) -> None:
    """`make image` (deploy/image.sh) with a base image that is neither present nor pullable (a
    registry address nothing listens on, as on a machine that reaches no registry) stops before
    building, exit 2, naming the base, the engine's reason and make image-offline; no image is
    tagged."""
    base = f"127.0.0.1:{free_port()}/python:3.11-slim"
    tag = f"ragward:public-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(["deploy/image.sh", tag], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "DOCKER_HOST": docker_host, "PYTHON_IMAGE": base},
                            timeout=120, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"needs the base image {base}, which is not present and cannot be pulled" in (
        result.stderr)
    assert "connection refused" in result.stderr  # the engine's own reason, passed on
    assert "make image-offline" in result.stderr
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)


def test_help_runs_in_the_image(image: BuiltImage, docker_client: docker.DockerClient) -> None:
    """`docker run IMAGE --help`: the entrypoint is ragward and lists its subcommands."""
    out = docker_client.containers.run(image.tag, ["--help"], network_mode="host",
                                       remove=True).decode()
    for command in ("serve", "gateway", "rag-core", "consumer", "ingest", "token", "audit"):
        assert command in out


# Run in the image as its own user: `ragward models check` passed; what the model directory
# holds, whose it is, and whether this user can read each file and write any of it (a real
# write tried, on a root filesystem that is not read-only, so only permissions can refuse).
MODELS_PROBE = """
import json, os, stat
from rag_core.models import MODELS, model_dir
from ragward.settings import load_settings
directory = model_dir(load_settings().model_dir)  # RAGWARD_MODEL_DIR, as the servers read it
def info(path):
    st = os.stat(path)
    return {'owner': [st.st_uid, st.st_gid], 'mode': oct(stat.S_IMODE(st.st_mode)),
            'writable': os.access(path, os.W_OK)}
files = {}
for name in sorted(os.listdir(directory)):
    path = directory / name
    files[name] = info(path)
    with open(path, 'rb') as file:
        files[name]['readable'] = len(file.read(16)) == 16
    try:
        open(path, 'ab').close()
        files[name]['appended'] = True
    except PermissionError:
        files[name]['appended'] = False
try:
    open(directory / '.probe', 'w').close()
    created = True
except PermissionError:
    created = False
print(json.dumps({'dir': str(directory), 'uid': os.getuid(), 'dir_info': info(directory),
                  'created': created, 'files': files,
                  'expected': sorted(m for model in MODELS for m in model.members)}))
"""


def test_image_ships_the_default_embeddings_models_read_only(
    image: BuiltImage, docker_client: docker.DockerClient
) -> None:
    """The image carries the bge model files the default embedding (use-m3-bge) needs:
    `ragward models check` exits 0 and finds RAGWARD_MODEL_DIR (/opt/ragward/models) complete;
    the directory holds exactly the four files rag_core.models names, root's, readable by the
    runtime user (uid 10001) and not writable by it, the directory included (a write is tried
    with a writable root filesystem, so the image's permissions alone refuse it)."""
    check = docker_client.containers.run(image.tag, ["models", "check"], network_mode="host",
                                         remove=True).decode()
    assert check.strip() == "/opt/ragward/models: complete", check
    found = json.loads(docker_client.containers.run(
        image.tag, ["-c", MODELS_PROBE], entrypoint="python", network_mode="host", remove=True))
    assert found["uid"] == 10001 and found["dir"] == "/opt/ragward/models", found
    assert sorted(found["files"]) == found["expected"] and len(found["expected"]) == 4, found
    assert found["dir_info"] == {"owner": [0, 0], "mode": "0o755", "writable": False}, found
    assert not found["created"], found
    for name, info in found["files"].items():
        assert info == {"owner": [0, 0], "mode": "0o444", "writable": False,
                        "readable": True, "appended": False}, (name, info)


def test_rag_core_indexes_with_the_default_embedding(stack: Stack) -> None:
    """Compose sets no RAGWARD_LOCAL_EMBEDDING, so the ingest job and rag-core use the default,
    use-m3-bge, on the image's models: every index the containerised rag-core serves (the one
    the ingest job built) records the embedding local:local-use-m3-bge."""
    for name in ("ingest", "rag-core"):
        assert "RAGWARD_LOCAL_EMBEDDING" not in stack.services[name].spec["environment"], name
    code, out = exec_python(stack.containers["rag-core"], LIST_INDEXES)
    assert code == 0, out
    indexes = json.loads(out)["indexes"]
    assert indexes and {index["model"] for index in indexes} == {"local:local-use-m3-bge"}, (
        indexes)


# rag-core's own GET /v1/indexes, asked from inside its container with its internal token.
LIST_INDEXES = """
import os, urllib.request
request = urllib.request.Request(
    'http://127.0.0.1:%s/v1/indexes' % os.environ['RAGWARD_RAG_CORE_PORT'],
    headers={'X-Internal-Token': os.environ['RAGWARD_INTERNAL_TOKEN']})
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""


def test_every_ragward_service_turns_healthy(stack: Stack) -> None:
    """gateway, rag-core (after its ingest job exited 0) and the three consumers, each with the
    compose file's own command, user, read-only root and health check, are healthy."""
    for name in STARTED:
        container = stack.containers[name]
        container.reload()
        attrs = container.attrs
        spec = stack.services[name].spec
        assert attrs["Config"]["Cmd"] == spec["command"], name
        assert attrs["Config"]["User"] == spec["user"], name
        assert attrs["HostConfig"]["ReadonlyRootfs"] is spec["read_only"] is True, name
        if name == "ingest":
            assert attrs["State"]["ExitCode"] == 0
            continue
        assert attrs["Config"]["Healthcheck"]["Test"] == spec["healthcheck"]["test"], name
        assert attrs["State"]["Health"]["Status"] == "healthy", name
    assert set(stack.healthy_s) == {"rag-core", "gateway-1", *CONSUMERS}


def test_query_through_the_container_is_answered_and_audited(stack: Stack) -> None:
    """A query through the containerised gateway is answered by the containerised rag-core, and
    its audit record, written by the containerised audit consumer, is visible in /v1/audit."""
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        response = client.post("/v1/query", json={"question": "How do refunds work?"},
                               headers=bearer())
        assert response.status_code == 200, response.text
        assert response.json()["answer"]
        request_id = response.headers["x-request-id"]
        deadline = time.monotonic() + 60
        records: list[Any] = []
        while time.monotonic() < deadline and not records:
            page = client.get("/v1/audit", params={"request_id": request_id},
                              headers=bearer(sub="carol", roles=["compliance"]))
            assert page.status_code == 200, page.text
            records = page.json()["records"]
            time.sleep(0.2)
    assert records, "the audit consumer never stored the request"
    assert records[0]["request_id"] == request_id and records[0]["decision"] == "allow"


# Run in a container: the ids of this process and of the container's main process (pid 1),
# every directory this user may write (access(2) says no on a read-only mount), walked from /
# without descending into a writable one, and a real write tried in each of those and in the
# usual suspects.
WRITE_PROBE = """
import json, os
def status(field):
    line = next(l for l in open('/proc/1/status') if l.startswith(field + ':'))
    return int(line.split()[1])
writable = []
for root, dirs, _ in os.walk('/'):
    if root == '/':
        dirs[:] = [d for d in dirs if d not in ('proc', 'sys')]
    if root != '/' and os.access(root, os.W_OK):
        writable.append(root)
        dirs[:] = []
wrote = {}
for d in sorted(set(writable) | {'/', '/opt/ragward', '/etc', '/usr', '/var', '/data', '/tmp'}):
    probe = os.path.join(d, '.ragward-write-probe')
    try:
        open(probe, 'w').close()
        os.remove(probe)
        wrote[d] = True
    except OSError:
        wrote[d] = False
mounts = dict(line.split()[1:3] for line in open('/proc/self/mounts'))
print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'pid1': [status('Uid'), status('Gid')],
                  'writable': sorted(writable), 'wrote': wrote,
                  'fs': {d: mounts.get(d) for d in writable}}))
"""
# What every container gets from the engine besides the file's mounts: POSIX IPC, in memory,
# private to the container and bounded (/dev/shm is 64 MB by default), never on disk.
ENGINE_IPC = {"/dev/shm": "tmpfs", "/dev/mqueue": "mqueue"}


def _probe(stack: Stack, name: str) -> dict[str, Any]:
    """WRITE_PROBE as service ``name``: exec'd in its running container (as the container's
    user), or for the ingest job, which has exited, in a one-off container of that service."""
    command = ["python", "-c", WRITE_PROBE]
    container = stack.containers[name]
    container.reload()
    if container.status == "running":
        code, out = exec_python(container, WRITE_PROBE)
    else:
        one_off = stack.start(name, command)
        code = one_off.wait(timeout=120)["StatusCode"]
        out = one_off.logs(stdout=True, stderr=code != 0).decode(errors="replace")
    assert code == 0, (name, out)
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", STARTED)
def test_runs_as_its_compose_user_and_writes_only_its_mounts(stack: Stack, name: str) -> None:
    """Every service that runs the ragward image (gateway, rag-core, the ingest job, the three
    consumers) runs as the compose file's user, which is the image's uid 10001, main process
    included, with a read-only root: the only places it can write are the file's tmpfs and
    volumes for that service, which are /tmp and /data at most (/data only where a volume is
    mounted: the image's /data is read-only under read_only), and the engine's in-memory IPC
    mounts (/dev/shm, /dev/mqueue), nothing else."""
    service = stack.services[name]
    uid, gid = (int(part) for part in service.spec["user"].split(":"))
    assert (uid, gid) == (10001, 10001), f"{name}: compose runs it as {service.spec['user']}"
    assert service.spec["read_only"] is True, name
    result = _probe(stack, name)
    assert (result["uid"], result["gid"]) == (uid, gid), (name, result)
    assert result["pid1"] == [uid, gid], (name, result)
    mounts = service.writable_mounts
    assert mounts <= {"/data", "/tmp"} and "/tmp" in mounts, (name, mounts)
    assert set(result["writable"]) == mounts | set(ENGINE_IPC), (name, result["writable"])
    assert {d: result["fs"][d] for d in ENGINE_IPC} == ENGINE_IPC, (name, result["fs"])
    assert result["fs"]["/tmp"] == "tmpfs", (name, result["fs"])
    written = {d for d, ok in result["wrote"].items() if ok}
    assert written == mounts | set(ENGINE_IPC), (name, result["wrote"])


@contextlib.contextmanager
def frozen(broker: RunningService) -> Iterator[None]:
    """The broker's processes stopped (SIGSTOP): connections stay open and nothing answers,
    the way a hung broker or a partition looks to a client; SIGCONT on the way out."""
    os.killpg(broker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(broker.pid, signal.SIGCONT)


def _spool_bytes(client: httpx.Client) -> float:
    metrics = client.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    found = re.search(r"^ragward_gateway_spool_bytes (\S+)$", metrics.text, re.M)
    assert found, "no ragward_gateway_spool_bytes on /metrics"
    return float(found.group(1))


def _wait_for_log_event(container: Any, event: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := _log_events(container, event):
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {event} from {container.name} within {timeout_s:g} s: "
                         f"{container.logs()[-3000:].decode(errors='replace')}")


def _timed_stop(container: Any, grace_s: float) -> float:
    started = time.monotonic()
    container.stop(timeout=int(grace_s))
    return time.monotonic() - started


def _log_events(container: Any, event: str) -> list[dict[str, Any]]:
    lines = container.logs(stdout=True, stderr=True).decode(errors="replace").splitlines()
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                events.append(record)
    return events


def test_docker_stop_drains_a_non_empty_spool_and_loses_nothing(
    stack: Stack, docker_client: docker.DockerClient, pytestconfig: pytest.Config
) -> None:
    """compose's second gateway, containerised, answers queries 200 while Kafka is frozen
    (SIGSTOP) by spooling their audit events; `docker stop` (SIGTERM) comes while the spool holds
    them and Kafka is still frozen; Kafka thaws once the stopping gateway says it waits for the
    drain (so the drain cannot have happened before the stop). The gateway drains the spool to
    Kafka, exits 0 inside the compose file's stop_grace_period and leaves
    its spool empty, and every answered request's audit record reaches /v1/audit through the
    containerised audit consumer: nothing acknowledged is lost."""
    name = "gateway-2"
    gateway = stack.start(name)
    wait_healthy(gateway, 300)
    grace = stack.services[name].stop_grace_s
    answered: list[str] = []
    with httpx.Client(base_url=stack.url(name), timeout=30) as client, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        live = client.post("/v1/query", json={"question": "What is the refund window?"},
                           headers=bearer())
        assert live.status_code == 200, live.text  # its events went to Kafka directly
        answered.append(live.headers["x-request-id"])
        with frozen(stack.kafka):
            for i in range(SPOOLED_QUERIES):
                response = client.post("/v1/query", headers=bearer(),
                                       json={"question": f"How do refunds work? ({i})"})
                assert response.status_code == 200, response.text
                answered.append(response.headers["x-request-id"])
            spooled = _spool_bytes(client)
            assert spooled > 0, "Kafka is frozen, yet nothing was spooled"
            stopping = pool.submit(_timed_stop, gateway, grace)
            # Thaw only once the stopping gateway waits for its spool to drain.
            draining = _wait_for_log_event(gateway, "publisher.stop_draining", grace)
        took = stopping.result(timeout=grace + 60)
    gateway.reload()
    logs = gateway.logs()[-3000:].decode(errors="replace")
    assert gateway.attrs["State"]["ExitCode"] == 0, logs
    assert took < grace, f"took {took:.1f} s of a {grace:g} s grace period"
    assert _spool_left(docker_client, gateway) == 0, "records left undelivered in the spool"
    assert draining["spool_bytes"] > 0, draining  # what the stop had to drain
    drains = _log_events(gateway, "publisher.stop_drain")
    assert len(drains) == 1 and drains[0]["drained"] is True, logs
    _say_past_capture(pytestconfig)(
        f"ragward image tests: docker stop drained {spooled:.0f} spooled bytes "
        f"({SPOOLED_QUERIES} queries) and exited 0 in {took:.1f} s (grace {grace:g} s)")
    missing = set(answered)
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        deadline = time.monotonic() + 120
        while missing and time.monotonic() < deadline:
            for request_id in sorted(missing):
                page = client.get("/v1/audit", params={"request_id": request_id},
                                  headers=bearer(sub="carol", roles=["compliance"]))
                assert page.status_code == 200, page.text
                if page.json()["records"]:
                    missing.discard(request_id)
            time.sleep(0.2)
    assert not missing, f"{len(missing)} of {len(answered)} answered requests were never audited"


def test_docker_stop_exits_zero_within_the_grace_period(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    """`docker stop` (SIGTERM) ends the gateway and every consumer with exit code 0 inside the
    compose file's stop_grace_period, and the gateway leaves its audit spool empty (with Kafka
    up all along; stopping with records in the spool is the test above)."""
    for name in ("gateway-1", *CONSUMERS):
        container = stack.containers[name]
        grace = stack.services[name].stop_grace_s
        started = time.monotonic()
        container.stop(timeout=int(grace))
        took = time.monotonic() - started
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, (
            name, container.logs()[-3000:].decode(errors="replace"))
        assert took < grace, f"{name} took {took:.1f} s of a {grace:g} s grace period"
    assert _spool_left(docker_client, stack.containers["gateway-1"]) == 0, (
        "records left undelivered in the spool")


def _spool_left(client: docker.DockerClient, gateway: Any) -> int:
    """Bytes in a stopped gateway's spool, read by the spool's own code on its volume."""
    volume = next(m["Name"] for m in gateway.attrs["Mounts"] if m["Destination"] == "/data")
    out = client.containers.run(
        gateway.image, ["-c", SPOOL_BYTES], entrypoint="python",
        volumes={volume: {"bind": "/data", "mode": "rw"}}, network_mode="host", remove=True)
    return int(out)


# The spool's own reader (telemetry.spool), run in the image on the stopped gateway's volume.
SPOOL_BYTES = """
import asyncio, pathlib
from telemetry.spool import Spool
async def main():
    spool = Spool(pathlib.Path('/data/spool'), 1 << 30)
    await spool.start()
    print(spool.bytes_used)
    await spool.stop()
asyncio.run(main())
"""
