"""The local-services harness fails loudly, with a reason, when it cannot provide Kafka."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ragward import devservices


def test_missing_jars_without_maven_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No jar cache and no `mvn`: a ServiceError that names the problem, not a hang."""
    monkeypatch.setenv("RAGWARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # neither mvn nor java
    with pytest.raises(devservices.ServiceError, match="Kafka jars are unavailable"):
        devservices.kafka_libs()


def test_fetch_command_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    """`python -m ragward.devservices fetch` (what `make test` runs first) exits 1 and
    prints why when the jars cannot be fetched."""
    result = subprocess.run(
        [sys.executable, "-m", "ragward.devservices", "fetch"], capture_output=True,
        text=True, timeout=60, check=False,
        env={"RAGWARD_CACHE_DIR": str(tmp_path / "cache"), "PATH": str(tmp_path),
             "HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "Kafka jars are unavailable" in result.stderr
