"""deploy/alertmanager/alertmanager.yml (issue 19), checked by Debian's amtool.

amtool comes with ``prometheus-alertmanager`` (installed by deploy/install-system-deps.sh).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
SEVERITY_RECEIVER = {"page": "ragward-pager", "ticket": "ragward-tickets"}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool not found: run deploy/install-system-deps.sh "
                    "(Debian's prometheus-alertmanager)")
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_amtool_check_config_passes() -> None:
    """The example configuration is valid for Alertmanager (amtool check-config)."""
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _severities() -> set[str]:
    """Every severity the alerts of both sources carry."""
    found = {rule["labels"]["severity"]
             for rule in yaml.safe_load((REPO / "alerting" / "default_rules.yaml").read_text())
             ["rules"]}
    for path in (REPO / "deploy" / "prometheus" / "rules").glob("*.yml"):
        found |= {rule["labels"]["severity"] for group in yaml.safe_load(path.read_text())["groups"]
                  for rule in group["rules"] if "alert" in rule}
    return found


@pytest.mark.parametrize("alertname", ["RagwardHighErrorRate", "HighErrorRate"])
def test_every_severity_routes_to_its_receiver(alertname: str) -> None:
    """Each severity ragward's rules and Prometheus's rules use is routed (amtool config
    routes test) to its receiver, the same for Prometheus's and ragward's alert names."""
    assert _severities() == set(SEVERITY_RECEIVER)
    for severity, receiver in SEVERITY_RECEIVER.items():
        result = amtool("config", "routes", "test", f"--config.file={CONFIG}",
                        f"--verify.receivers={receiver}", f"alertname={alertname}",
                        "tenant=acme", f"severity={severity}")
        assert result.returncode == 0, (severity, result.stdout + result.stderr)
