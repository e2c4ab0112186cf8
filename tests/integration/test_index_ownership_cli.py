"""The operator's side of tenancy: `ragward ingest --tenant/--shared` and `ragward rag-core`
refusing to serve beyond loopback without its internal token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rag_core.ingest_cli import main as ingest_main
from rag_core.store import read_current, read_manifest, version_dir
from ragward import devservices
from ragward.cli import build_parser
from ragward.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def ragward(argv: list[str]) -> int:
    """`ragward ingest ...` parsed by the real parser, run in this process (without
    reconfiguring logging, which would outlive pytest's captured streams)."""
    return ingest_main(load_settings(), build_parser().parse_args(argv))


def _manifest(data: Path, index: str) -> dict[str, object]:
    root = data / "indexes"
    version = read_current(root, index)
    assert version is not None
    return read_manifest(version_dir(root, index, version))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "policy.md").write_text("# Policy\n\nAcme staff work from home on Fridays.\n")
    return docs


def test_ingest_asks_whose_documents_and_records_the_owner(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ingest PATH` without --tenant or --shared exits 2 with one line saying so and builds
    nothing; --tenant records the owner; publishing the index under another owner is
    refused; `--sample` alone is shared (what `make demo` runs)."""
    data = tmp_path / "data"
    monkeypatch.setenv("RAGWARD_DATA_DIR", str(data))
    assert ragward(["ingest", str(corpus), "--index", "acme-policy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tenant" in err and "--shared" in err
    assert read_current(data / "indexes", "acme-policy") is None
    assert ragward(["ingest", str(corpus), "--index", "acme-policy", "--tenant", "a\r\nb"]) == 2
    assert "--tenant" in capsys.readouterr().err

    assert ragward(["ingest", str(corpus), "--index", "acme-policy", "--tenant", "acme"]) == 0
    assert "owned by tenant 'acme'" in capsys.readouterr().out
    assert _manifest(data, "acme-policy")["owner"] == "acme"
    assert _manifest(data, "acme-policy")["shared"] is False
    assert ragward(["ingest", str(corpus), "--index", "acme-policy", "--tenant", "acme"]) == 0

    for other in (["--tenant", "globex"], ["--shared"]):
        assert ragward(["ingest", str(corpus), "--index", "acme-policy", *other]) == 2
        assert "owned by tenant 'acme'" in capsys.readouterr().err
    assert _manifest(data, "acme-policy")["owner"] == "acme"

    assert ragward(["ingest", "--sample"]) == 0
    assert _manifest(data, "default")["shared"] is True
    assert _manifest(data, "default")["owner"] is None


def test_rag_core_refuses_a_public_address_without_its_internal_token(tmp_path: Path) -> None:
    """`ragward rag-core --host 0.0.0.0` without RAGWARD_INTERNAL_TOKEN exits 2 at once
    with one line naming the setting."""
    env = {k: v for k, v in os.environ.items() if k != "RAGWARD_INTERNAL_TOKEN"}
    env["RAGWARD_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "ragward.cli", "rag-core", "--host", "0.0.0.0", "--port",
         str(devservices.free_port())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "RAGWARD_INTERNAL_TOKEN" in lines[0], result.stderr


def test_rag_core_on_loopback_without_a_token_warns_once(tmp_path: Path) -> None:
    """On 127.0.0.1 it starts, and says once that the token is unset."""
    port = devservices.free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAGWARD_INTERNAL_TOKEN"}
    env.update(RAGWARD_DATA_DIR=str(tmp_path), RAGWARD_LOG_FORMAT="json")
    process = subprocess.Popen(
        [sys.executable, "-m", "ragward.cli", "rag-core", "--host", "127.0.0.1", "--port",
         str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "rag-core did not start"
            time.sleep(0.2)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    events = [json.loads(line).get("event") for line in stderr.splitlines()
              if line.startswith("{")]
    assert events.count("internal_token_unset") == 1, stderr[-2000:]
