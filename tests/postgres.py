"""A real PostgreSQL for the audit store's tests: Debian's server in a temporary directory.

``RAGWARD_TEST_POSTGRES`` (a DSN) uses a server that is already running.
Otherwise ``initdb`` + ``pg_ctl start`` from ``/usr/lib/postgresql/*/bin`` on a
free loopback port, with its unix socket inside the temporary directory. initdb
refuses to run as root, so as root the server runs as the ``postgres`` user
(created if missing). With ``CI=true`` a server that cannot start fails the
run; it never skips. Each test that wants isolation creates its own database
with :func:`fresh_database`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragward.devservices import free_port


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "postgres"], check=True, capture_output=True
        )
    return ["runuser", "-u", "postgres", "--"]


def start_postgres(timeout: float = 30.0) -> tuple[str, Path, list[str], Path]:
    """Start a throwaway server; return (dsn, workdir, run-as prefix, bindir)."""
    bindir = _bindir()
    prefix = _run_as()
    workdir = Path(tempfile.mkdtemp(prefix="ragward-pg-"))
    data, sockets = workdir / "data", workdir / "sock"
    sockets.mkdir()
    if prefix:
        shutil.chown(workdir, "postgres")
        shutil.chown(sockets, "postgres")
    init = subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "ragward",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-400:]}")
    port = free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets}"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        " -c max_connections=100"
    )
    start = subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(workdir / "postgres.log"),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        log = workdir / "postgres.log"
        tail = log.read_text(errors="replace")[-400:] if log.exists() else start.stderr
        shutil.rmtree(workdir, ignore_errors=True)
        raise PostgresUnavailable(f"pg_ctl start failed: {tail.strip()}")
    return f"postgresql://ragward@127.0.0.1:{port}/postgres", workdir, prefix, bindir


def stop_postgres(workdir: Path, prefix: list[str], bindir: Path) -> None:
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(workdir / "data"),
            "-m",
            "immediate",
            "-w",
            "stop",
        ],
        capture_output=True,
        check=False,
    )
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a real PostgreSQL server (database ``postgres``), shared by the session."""
    if dsn := os.environ.get("RAGWARD_TEST_POSTGRES"):
        yield dsn
        return
    from tests.services import fail_or_skip

    try:
        dsn, workdir, prefix, bindir = start_postgres()
    except (PostgresUnavailable, OSError, subprocess.CalledProcessError) as exc:
        fail_or_skip("PostgreSQL", exc)
    try:
        yield dsn
    finally:
        stop_postgres(workdir, prefix, bindir)


def fresh_database(dsn: str) -> str:
    """Create an empty database on the server of ``dsn``; return its DSN."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return dsn.rsplit("/", 1)[0] + "/" + name
