"""The security documentation says what the code does (issue 18): the README no longer
tells operators the Kafka client lacks TLS/SASL, and the runbook's ``kafka-acls.sh``
commands grant exactly the ACLs :mod:`telemetry.kafka_acls` plans (and the secured test
broker enforces), no more and no less."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ragward.settings import load_settings
from telemetry.kafka_acls import CLUSTER, COMPONENTS, DEFAULT_GROUPS, grants

REPO = Path(__file__).resolve().parents[2]


def _runbook_acls(text: str) -> set[tuple[str, str, str, str]]:
    """(principal, resource, name, operation) for every ``$ACL`` line of the runbook's
    bash block, its one ``for c in ...`` loop unrolled."""
    block = text.split("```bash\nACL=", 1)[1].split("```", 1)[0]
    lines: list[str] = []
    pending = ""
    for raw in block.splitlines()[1:]:
        pending += raw.rstrip("\\").strip() + " "
        if not raw.endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    expanded: list[str] = []
    loop: tuple[list[str], list[str]] | None = None
    for line in lines:
        if (start := re.fullmatch(r"for c in ([\w ]+); do", line)) is not None:
            loop = (start.group(1).split(), [])
        elif line == "done" and loop is not None:
            expanded += [body.replace("$c", c) for c in loop[0] for body in loop[1]]
            loop = None
        elif loop is not None:
            loop[1].append(line)
        else:
            expanded.append(line)
    found = set()
    for line in expanded:
        if not line.startswith("$ACL "):
            continue
        words = shlex.split(line)[1:]
        pairs = list(zip(words[::2], words[1::2], strict=False))
        principals = [v for k, v in pairs if k == "--allow-principal"]
        operations = [v for k, v in pairs if k == "--operation"]
        targets = [(k[2:], v) for k, v in pairs if k in ("--topic", "--group")]
        if "--cluster" in words:
            targets.append(("cluster", CLUSTER))
        found |= {(p, kind, name, op) for p in principals for op in operations
                  for kind, name in targets}
    return found


def test_the_readme_no_longer_says_kafka_has_no_tls_or_sasl() -> None:
    """The old warning ("no TLS/SASL settings yet: keep Kafka on a private network") is
    gone, and the README points to the security section instead."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"no TLS/SASL|no TLS or SASL|keep Kafka on a private network",
                         readme, re.IGNORECASE)
    assert "RAGWARD_KAFKA_SECURITY_PROTOCOL" in readme and "docs/security.md" in readme


def test_the_runbook_acl_commands_grant_exactly_the_planned_acls() -> None:
    """docs/security.md's kafka-acls.sh commands, for the default names, give each
    component user exactly what telemetry.kafka_acls.grants plans for it."""
    settings = load_settings()
    planned = {(g.principal, g.resource, g.name, g.operation)
               for component in COMPONENTS if component != "serve"
               for g in grants(settings, component, f"ragward-{component}", DEFAULT_GROUPS)}
    documented = _runbook_acls((REPO / "docs" / "security.md").read_text(encoding="utf-8"))
    assert documented == planned


def test_the_security_runbook_covers_keys_and_forged_events() -> None:
    """The runbook has the parts issue 18 asks for: key generation, storage and rotation,
    what the dead-letter topic holds, and how to investigate a forged event."""
    text = (REPO / "docs" / "security.md").read_text(encoding="utf-8").lower()
    for words in ("ragward keys generate", "rotat", "ragward.deadletter.v1", "forged",
                  "kafka-acls.sh", "sasl_ssl", "rediss://", "sslmode"):
        assert words in text, words
