"""The image on a real Docker engine (issue 19): built with no registry, run as compose runs it.

The build is deploy/image-offline.sh (the air-gapped path); the services are
docker-compose.yml's own (tests/image/compose.py reads them from the file); Kafka, Redis and
PostgreSQL are the test session's, on the host. Figures (build time, start to healthy) are
printed past pytest's capture.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.gateway_harness import bearer
from tests.image.conftest import CONSUMERS, BuiltImage, Stack, exec_python

# A cold build (wheelhouse downloaded, base made, every layer) takes many minutes on two cores:
# the session fixture that builds counts against the first test's timeout.
pytestmark = pytest.mark.timeout(3600)

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


def test_help_runs_in_the_image(image: BuiltImage, docker_client: docker.DockerClient) -> None:
    """`docker run IMAGE --help`: the entrypoint is ragward and lists its subcommands."""
    out = docker_client.containers.run(image.tag, ["--help"], network_mode="host",
                                       remove=True).decode()
    for command in ("serve", "gateway", "rag-core", "consumer", "ingest", "token", "audit"):
        assert command in out


def test_every_ragward_service_turns_healthy(stack: Stack) -> None:
    """gateway, rag-core (after its ingest job exited 0) and the three consumers, each with the
    compose file's own command, user, read-only root and health check, are healthy."""
    for name, container in stack.containers.items():
        container.reload()
        attrs = container.attrs
        spec = stack.services[name].spec
        assert attrs["Config"]["Cmd"] == spec["command"], name
        assert attrs["Config"]["User"] == spec["user"] == "10001:10001", name
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True, name
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


def test_runs_as_10001_and_writes_only_data_and_tmp(stack: Stack) -> None:
    """Inside the gateway container the process is uid 10001 and only /data (its volume) and
    /tmp (tmpfs) are writable: /, /opt/ragward, /etc and /usr refuse writes."""
    code, out = exec_python(stack.containers["gateway-1"], (
        "import os, json\n"
        "result = {'uid': os.getuid()}\n"
        "for d in ('/', '/opt/ragward', '/etc', '/usr', '/data', '/tmp'):\n"
        "    try:\n"
        "        probe = os.path.join(d, '.probe')\n"
        "        open(probe, 'w').close(); os.remove(probe)\n"
        "        result[d] = True\n"
        "    except OSError:\n"
        "        result[d] = False\n"
        "print(json.dumps(result))\n"))
    assert code == 0, out
    result = json.loads(out)
    assert result.pop("uid") == 10001
    assert {d for d, ok in result.items() if ok} == {"/data", "/tmp"}


def test_docker_stop_exits_zero_within_the_grace_period(
    stack: Stack, docker_client: docker.DockerClient
) -> None:
    """`docker stop` (SIGTERM) ends the gateway and every consumer with exit code 0 inside the
    compose file's stop_grace_period, and the gateway leaves its audit spool empty."""
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
    gateway = stack.containers["gateway-1"]
    volume = next(m["Name"] for m in gateway.attrs["Mounts"] if m["Destination"] == "/data")
    out = docker_client.containers.run(
        gateway.image, ["-c", SPOOL_BYTES], entrypoint="python",
        volumes={volume: {"bind": "/data", "mode": "rw"}}, network_mode="host", remove=True)
    assert int(out) == 0, "records left undelivered in the spool"


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
