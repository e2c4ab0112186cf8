"""What was tested is what installs: the lock, its guard and the upgrade report (issue 14)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services

REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".venv" / "bin" / "uv"


def _copy_project(dst: Path) -> None:
    for name in ("Makefile", "pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, dst / name)
    shutil.copytree(REPO / "native", dst / "native", ignore=shutil.ignore_patterns("target"))
    (dst / ".venv").symlink_to(REPO / ".venv")


def test_committed_lock_matches_pyproject() -> None:
    """uv.lock is current for pyproject.toml, so `make test` installs what was resolved."""
    done = subprocess.run(
        [UV, "lock", "--check", "--offline"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_a_stale_lock_stops_make_at_once_naming_make_lock(tmp_path: Path) -> None:
    """A dependency added to pyproject.toml without re-locking fails `make test` and
    `make lint` before anything installs or starts, with one line naming `make lock`."""
    _copy_project(tmp_path)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text()
    tqdm = '    "tqdm>=4.66,<5",\n'
    pyproject.write_text(text.replace(tqdm, tqdm + '    "six>=1.16",\n'))
    for target in ("test", "lint"):
        done = subprocess.run(
            ["make", "--no-print-directory", target], cwd=tmp_path, capture_output=True,
            text=True, timeout=60,
        )
        assert done.returncode != 0
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            "error: uv.lock does not match pyproject.toml: run 'make lock' (and commit uv.lock)"
        ]
        assert "pytest" not in done.stdout and "cargo" not in done.stdout


def test_upgrade_report_names_each_move_and_its_size(tmp_path: Path) -> None:
    """`make upgrade` prints added, removed and moved packages with the size of the move."""
    old, new = tmp_path / "old.lock", tmp_path / "new.lock"
    old.write_text(
        '[[package]]\nname = "a"\nversion = "1.2.3"\n[[package]]\nname = "b"\nversion = "0.4.1"\n'
        '[[package]]\nname = "c"\nversion = "2.0.0"\n[[package]]\nname = "d"\nversion = "5.0"\n'
    )
    new.write_text(
        '[[package]]\nname = "a"\nversion = "2.0.0"\n[[package]]\nname = "b"\nversion = "0.5.0"\n'
        '[[package]]\nname = "c"\nversion = "2.0.1"\n[[package]]\nname = "e"\nversion = "1.0"\n'
    )
    done = subprocess.run(
        [sys.executable, REPO / "deploy" / "lock_report.py", old, new],
        capture_output=True, text=True, check=True,
    )
    assert done.stdout.splitlines() == [
        "uv.lock: 5 of 4 packages moved",
        "  ~ a 1.2.3 -> 2.0.0 (major upgrade)",
        "  ~ b 0.4.1 -> 0.5.0 (minor (breaking in 0.x) upgrade)",
        "  ~ c 2.0.0 -> 2.0.1 (patch upgrade)",
        "  - d 5.0 (removed)",
        "  + e 1.0 (added)",
    ]


def test_native_builds_are_locked() -> None:
    """cargo runs with --locked everywhere the Makefile calls it, and maturin builds locked."""
    makefile = (REPO / "Makefile").read_text()
    cargo_calls = [line for line in makefile.splitlines() if line.strip().startswith("cargo ")]
    assert cargo_calls and all("--locked" in line for line in cargo_calls if "fmt" not in line)
    assert "locked = true" in (REPO / "native" / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    ("env", "docker", "reason"),
    [
        ({"RAGWARD_TEST_DOCKER": "0"}, False, "RAGWARD_TEST_DOCKER=0"),
        ({"RAGWARD_TEST_DOCKER": "1"}, True, "RAGWARD_TEST_DOCKER=1"),
        ({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, False, "no Docker engine answers"),
    ],
)
def test_service_choice_says_why(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], docker: bool, reason: str
) -> None:
    """The fixtures pick testcontainers only when asked or when an engine answers with the
    images at hand; otherwise local processes, with the reason."""
    monkeypatch.delenv("RAGWARD_TEST_DOCKER", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert services.choose(services.REDIS_IMAGE) == services.Choice(docker, reason)
