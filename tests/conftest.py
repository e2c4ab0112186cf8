"""Session-wide real services and per-test isolation helpers."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from gateway.pii import Scanner
from ragward.devservices import ServiceError
from ragward.settings import Settings, load_settings
from tests.postgres import postgres_dsn  # noqa: F401  (registers the session fixture)
from tests.secure_services import secure_kafka, secure_redis  # noqa: F401  (the same)
from tests.services import fail_or_skip, kafka_service, redis_cluster_service, redis_service
from tests.signing_support import key_env
from tests.upstream_server import UpstreamServer

TEST_SECRET = "test-secret-0123456789-0123456789-abcdef"


def pytest_configure(config: pytest.Config) -> None:
    """The suite ingests the sample corpus some twenty times, in-process and in child
    processes: on the hashed embedding (milliseconds) rather than the default USE model
    (seconds per ingest on two shared cores). tests/integration/test_rag_sentence_encoder.py
    runs the default model end to end."""
    os.environ.setdefault("RAGWARD_LOCAL_EMBEDDING", "hashed")


def _session_service(what: str, service: AbstractContextManager[str]) -> Iterator[str]:
    try:
        address = service.__enter__()
    except ServiceError as exc:
        fail_or_skip(what, exc)
        raise
    try:
        yield address
    finally:
        service.__exit__(None, None, None)


def _say_past_capture(config: pytest.Config) -> Callable[[str], None]:
    # Which service backend was chosen, and why, matters most when the run then fails.
    def say(line: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(line, file=sys.stderr, flush=True)

    return say


@pytest.fixture(scope="session", autouse=True)
def event_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The session's event key pair, in the environment every settings object and every
    child process reads: gateways sign with it, consumers verify with its key set."""
    env = key_env(tmp_path_factory.mktemp("event-keys"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture(scope="session")
def kafka_bootstrap(pytestconfig: pytest.Config) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker, shared by the session."""
    yield from _session_service("Kafka", kafka_service(_say_past_capture(pytestconfig)))


@pytest.fixture(scope="session")
def redis_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """URL of a real Redis server, shared by the session."""
    yield from _session_service("Redis", redis_service(_say_past_capture(pytestconfig)))


@pytest.fixture(scope="session")
def redis_cluster_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """``redis+cluster://`` URL of a real three-node Redis Cluster, shared by the session;
    started only by the tests that ask for it."""
    yield from _session_service("Redis Cluster",
                                redis_cluster_service(_say_past_capture(pytestconfig)))


@pytest.fixture
async def upstream() -> AsyncIterator[UpstreamServer]:
    """A real HTTP server speaking rag_core's API, with knobs for failures and latency."""
    server = UpstreamServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, groups and key prefixes of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded-mode settings isolated in a temporary data directory."""
    return load_settings(data_dir=tmp_path / "data", jwt_secret=TEST_SECRET)


@pytest.fixture(params=["native", "python"])
def pii_scanner(request: pytest.FixtureRequest) -> Scanner:
    """Each PII scanner in turn, to hand to a Redactor (or a gateway): a test that takes
    this fixture runs on the native scanner and on the Python reference."""
    from gateway.pii import native_scanner, python_scanner

    scanner = native_scanner() if request.param == "native" else python_scanner()
    assert scanner is not None, "ragward_pii is not installed: run `make install`"
    return scanner
