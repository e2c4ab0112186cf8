"""docker-compose.yml's ragward services as containers, read from the file itself.

Each service runs with the file's own command, environment, user, read-only root filesystem,
tmpfs, volumes (named volumes made per run) and health check; only what ``overrides`` names is
replaced. Compose's variable interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?message}``, ``${VAR?message}``, ``$$``) is applied with the given variables, as
``docker compose`` would with a ``.env`` file.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\})")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNIT_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
            "h": 3_600_000_000_000}


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        present = name in variables and (variables[name] != "" or op is None or ":" not in op)
        if op in (":-", "-"):
            return variables[name] if present else arg
        if op in (":?", "?") and not present:
            raise ValueError(f"compose variable {name}: {arg}")
        return variables.get(name, "")

    return _VARIABLE.sub(one, value)


def nanoseconds(duration: str) -> int:
    """Compose's duration (``1m30s``, ``10s``) in nanoseconds, as the Engine API takes it."""
    parts = _DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return int(sum(float(n) * _UNIT_NS[u] for n, u in parts))


def services(variables: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The file's services, merge keys resolved and variables interpolated."""
    return interpolate(yaml.safe_load(COMPOSE.read_text())["services"], variables)  # type: ignore[no-any-return]


@dataclass
class Service:
    """One compose service run as a container on the host's network."""

    name: str
    spec: dict[str, Any]
    volumes: dict[str, str] = field(default_factory=dict)  # compose volume -> engine volume

    def environment(self, passed: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, value in self.spec.get("environment", {}).items():
            if value is None:  # `KEY:` with no value: passed through when the shell has it
                if key in passed:
                    env[key] = passed[key]
            else:
                env[key] = str(value)
        env.update(overrides)
        return env

    def healthcheck(self) -> dict[str, Any] | None:
        check = self.spec.get("healthcheck")
        if check is None:
            return None  # the image's own HEALTHCHECK applies
        if check.get("disable"):
            return {"test": ["NONE"]}
        return {
            "test": check["test"],
            "interval": nanoseconds(check.get("interval", "30s")),
            "timeout": nanoseconds(check.get("timeout", "30s")),
            "retries": int(check.get("retries", 3)),
            "start_period": nanoseconds(check.get("start_period", "0s")),
        }

    def health_url(self, port: int) -> str:
        """The URL the service's health check asks, on ``port`` (the checks read the port from
        the environment: ``'http://127.0.0.1:%s/health' % os.environ.get(...)``)."""
        test = " ".join(self.spec["healthcheck"]["test"])
        found = re.search(r"http://127\.0\.0\.1:%s(/[\w/]*)", test)
        assert found, f"{self.name}: no http://127.0.0.1:%s/... in its health check"
        return f"http://127.0.0.1:{port}{found.group(1)}"

    @property
    def stop_grace_s(self) -> float:
        return nanoseconds(self.spec.get("stop_grace_period", "10s")) / 1e9

    @property
    def writable_mounts(self) -> set[str]:
        """Where the file lets this service write: its tmpfs and its volumes' targets."""
        return ({entry.split(":")[1] for entry in self.spec.get("volumes", [])}
                | set(self.spec.get("tmpfs", [])))

    def run(self, client: docker.DockerClient, name: str, passed: dict[str, str],
            overrides: dict[str, str], command: list[str] | None = None) -> Any:
        """Start the service's container; ``command`` replaces the whole process (entrypoint
        and command), everything else stays the file's."""
        mounts = {}
        for entry in self.spec.get("volumes", []):
            source, target = entry.split(":")[:2]
            mounts[self.volumes[source]] = {"bind": target, "mode": "rw"}
        return client.containers.run(
            self.spec["image"],
            command=self.spec.get("command") if command is None else command[1:],
            entrypoint=None if command is None else command[:1],
            name=name,
            environment=self.environment(passed, overrides),
            user=self.spec.get("user"),
            read_only=bool(self.spec.get("read_only", False)),
            tmpfs={path: "" for path in self.spec.get("tmpfs", [])},
            volumes=mounts,
            healthcheck=self.healthcheck(),
            stop_signal=self.spec.get("stop_signal", "SIGTERM"),
            network_mode="host",
            detach=True,
        )


def wait_healthy(container: Any, timeout_s: float) -> float:
    """Seconds from now until the engine reports the container healthy (fails on exit)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        container.reload()
        state = container.attrs["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return time.monotonic() - started
        if state["Status"] == "exited":
            raise AssertionError(f"{container.name} exited {state['ExitCode']}: "
                                 f"{container.logs()[-3000:].decode(errors='replace')}")
        time.sleep(0.25)
    raise AssertionError(f"{container.name} not healthy in {timeout_s:g} s: "
                         f"{container.logs()[-3000:].decode(errors='replace')}")
