"""README.md's Operations section (issue 10): what it tells an operator to run and set exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from ragward.cli import build_parser
from ragward.settings import Settings, env_name

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "README.md"


def text() -> str:
    return GUIDE.read_text()


def anchors() -> set[str]:
    return {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in text().splitlines()
        if line.startswith("#")
    }


FENCE = re.compile(r"^ *```([a-z]*)\n(.*?)^ *```", re.S | re.M)


def code() -> list[str]:
    """Fenced blocks (continuation lines joined) and inline spans that run something."""
    # ```text blocks show output, not commands
    fenced = [block.replace("\\\n", " ") for lang, block in FENCE.findall(text())
              if lang != "text"]
    spans = re.findall(r"`([^`]+)`", FENCE.sub("", text()))
    inline = [span.replace("\n", " ") for span in spans if " exec " in span]
    return fenced + inline


def ragward_commands() -> list[list[str]]:
    """`ragward ARGS` invocations (not `-n ragward`, the namespace)."""
    commands = []
    for snippet in code():
        for line in snippet.splitlines():
            for match in re.finditer(r"(?:^|(?<=[\s(]))(?<!-n )ragward ([^|;&)\n]+)", line):
                commands.append(shlex.split(match.group(1)))
    return commands


def test_guide_commands_are_real_ragward_commands() -> None:
    """Every `ragward ...` command in the guide's code parses with ragward's CLI parser."""
    commands = ragward_commands()
    assert len(commands) >= 5
    for argv in commands:
        if argv == ["--help"]:
            continue
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"README.md: `ragward {shlex.join(argv)}`") from exc


def test_guide_settings_are_real() -> None:
    """Every RAGWARD_* / OPENAI_* variable the guide names is a ragward setting."""
    # the test harness's own variables are documented too; they are not settings
    known = {env_name(field) for field in Settings.model_fields} | {
        "RAGWARD_TEST_KAFKA", "RAGWARD_TEST_REDIS", "RAGWARD_TEST_DOCKER",
        "RAGWARD_TEST_DOCKER_PULL_TIMEOUT_S"}
    for info in Settings.model_fields.values():
        if isinstance(info.validation_alias, AliasChoices):
            known.update(str(choice) for choice in info.validation_alias.choices)
    named = set(re.findall(r"\b(RAGWARD_[A-Z0-9_]*[A-Z0-9]|OPENAI_(?:API_KEY|BASE_URL))\b", text()))
    assert len(named) > 20
    assert named <= known, sorted(named - known)


def test_guide_paths_exist() -> None:
    """Every repository path the guide names exists."""
    pattern = r"\b((?:deploy/(?:compose|k8s|prometheus)|docs|bench)(?:/[A-Za-z0-9_.*-]+)*)"
    paths = set(re.findall(pattern, text()))
    paths |= {"Dockerfile", "docker-compose.yml"}
    for path in sorted(paths):
        if "*" in path:
            assert list(REPO.glob(path)), path
        else:
            assert (REPO / path).exists(), path


def test_guide_internal_links_resolve() -> None:
    """Every `(#anchor)` link points at a heading of the guide."""
    links = set(re.findall(r"\]\(#([a-z0-9-]+)\)", text()))
    assert links
    assert links <= anchors(), links - anchors()


def test_runbook_has_an_entry_per_default_alert() -> None:
    """Each default alert rule (alerting/default_rules.yaml) and each Prometheus-only alert has a
    runbook heading with meaning, first checks and mitigation."""
    defaults = {rule["name"] for rule in yaml.safe_load(
        (REPO / "alerting" / "default_rules.yaml").read_text())["rules"]}
    runbook = text().split("### Runbook", 1)[1]
    entries = dict(re.findall(r"^#### (\w+)\n(.*?)(?=^#### |\Z)", runbook, re.S | re.M))
    assert defaults | {"TargetDown", "UpstreamCircuitOpen"} <= set(entries)
    for name in defaults:
        body = entries[name]
        for part in ("*Meaning:*", "*First checks:*", "*Mitigation:*"):
            assert part in body, (name, part)


@pytest.mark.parametrize("topic", ["ragward.audit.v1"])
def test_guide_states_the_audit_topic_settings(topic: str) -> None:
    """The audit-topic command carries replication 3, min.insync.replicas 2, >= 12 months'
    retention and cleanup.policy=delete."""
    command = next(s for s in code() if f"--create --topic {topic}" in s)
    assert "--replication-factor 3" in command
    assert "min.insync.replicas=2" in command and "cleanup.policy=delete" in command
    retention = int(re.search(r"retention\.ms=(\d+)", command).group(1))  # type: ignore[union-attr]
    assert retention >= 365 * 24 * 3600 * 1000
