"""``ragward gateway --workers N``: N gateway processes on one port, each with its own spool.

The supervisor (this process) starts N children, ``ragward gateway --worker-slot i``;
each binds the port itself with ``SO_REUSEPORT``, so the kernel spreads connections
over them and no socket is handed across processes. Worker ``i`` keeps its state under
``RAGWARD_DATA_DIR/worker-i`` — for the gateway that is the audit spool only — so no
two processes ever share a spool (the spool's ``flock`` would refuse it anyway), and a
worker that dies is started again on the *same* slot, where it drains what its
predecessor had fsynced. A worker that fails within its first seconds (a bad setting,
the port taken) stops them all with its exit code instead of restarting in a loop.
SIGTERM or SIGINT stops every worker (each finishes its in-flight requests and flushes
its publisher, as a single gateway does) and then the supervisor.

Why not uvicorn's own ``--workers``: its children cannot be told apart, so a restarted
one could not find the spool it must drain.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import structlog

from ragward.settings import Settings

log = structlog.get_logger(__name__)
EARLY_EXIT_S = 5.0  # a worker gone this soon after its start is broken, not unlucky
STOP_TIMEOUT_S = 30.0


def worker_settings(settings: Settings, slot: int) -> Settings:
    """The settings of worker ``slot``: its own data directory, hence its own spool."""
    return settings.model_copy(update={"data_dir": settings.data_dir / f"worker-{slot}"})


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket that other workers may bind too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def supervise(workers: int, host: str, port: int, argv_prefix: list[str]) -> int:
    """Run ``workers`` children until SIGTERM/SIGINT; restart one that dies later than
    :data:`EARLY_EXIT_S` after its start; return the first early failure's exit code."""
    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}

    def spawn(slot: int) -> tuple[subprocess.Popen[bytes], float]:
        cmd = [*argv_prefix, "gateway", "--host", host, "--port", str(port),
               "--worker-slot", str(slot)]
        return subprocess.Popen(cmd), time.monotonic()  # noqa: S603 (our own command)

    children = {slot: spawn(slot) for slot in range(workers)}
    log.info("gateway.workers_started", workers=workers, port=port,
             pids=[proc.pid for proc, _ in children.values()])
    code = 0
    try:
        while not stopping:
            for slot, (proc, started) in list(children.items()):
                status = proc.poll()
                if status is None:
                    continue
                if time.monotonic() - started < EARLY_EXIT_S:
                    log.error("gateway.worker_failed", slot=slot, exit_code=status)
                    code = status or 1
                    stopping = True
                    break
                log.warning("gateway.worker_restarted", slot=slot, exit_code=status)
                children[slot] = spawn(slot)
            time.sleep(0.2)
    finally:
        for proc, _ in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc, _ in children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code


def ragward_command() -> list[str]:
    """How to start ``ragward`` again: the console script next to this interpreter."""
    script = Path(sys.executable).with_name("ragward")
    if script.exists() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "ragward.cli"]
