"""A Docker engine for the image tests: the one DOCKER_HOST names, or a private dockerd.

When no engine answers and this is root with Debian's docker.io installed, a dockerd of our
own is started (``--iptables=false --bridge=none``: containers use the host's network, so all
traffic stays on loopback) on its own socket, with its data root under ragward's cache so the
build cache and the Debian base outlive the run, and stopped at the end. Two dockerds on one
data root corrupt it, so a session holds a lock on it while its dockerd runs and a second
session (another checkout on the same machine) waits for the lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

CACHE = Path.home() / ".cache" / "ragward"
LOCK_WAIT_S = 3600.0  # a whole other image-test run, cold build included


def _answers(host: str) -> bool:
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False
    client = docker.DockerClient(base_url=host, timeout=10)
    try:
        client.ping()
        return True
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


@contextmanager
def docker_engine(say: Callable[[str], None] = print) -> Iterator[str]:
    """Yield a DOCKER_HOST that answers; start (and then stop) a private dockerd if needed."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if _answers(host):
        say(f"ragward image tests: Docker engine at {host}")
        yield host
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise RuntimeError(f"no Docker engine answers at {host} and no dockerd to start as root "
                           "(deploy/install-system-deps.sh image installs docker.io)")
    with _data_root_lock(CACHE / "docker.lock", say):
        yield from _private_dockerd(dockerd, say)


@contextmanager
def _data_root_lock(path: Path, say: Callable[[str], None]) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} still held after {LOCK_WAIT_S:g} s: another "
                                       "session's dockerd uses the data root") from None
                if not told:
                    say(f"ragward image tests: waiting for {path} (another session's dockerd)")
                    told = True
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _private_dockerd(dockerd: str, say: Callable[[str], None]) -> Iterator[str]:
    run = Path("/tmp") / f"ragward-dockerd-{os.getpid()}"
    run.mkdir(parents=True, exist_ok=True)
    host = f"unix://{run}/docker.sock"
    log = (run / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [dockerd, "--iptables=false", "--bridge=none", "-H", host,
         "--data-root", str(CACHE / "docker"), "--exec-root", str(run / "exec"),
         "--pidfile", str(run / "dockerd.pid")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(host):
            if process.poll() is not None or time.monotonic() > deadline:
                logs = (run / "dockerd.log").read_text()[-2000:]
                raise RuntimeError(f"dockerd did not answer: {logs}")
            time.sleep(0.2)
        say(f"ragward image tests: started dockerd at {host} (data root {CACHE / 'docker'})")
        yield host
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
