"""The repository's documentation refers only to itself (issue 16, "Self-contained docs").

The engineers' brief lives outside the repository; a user or maintainer who clones
ragward has only what is in it. These tests fail when code or docs point at a file
that is not there: the brief's section marks ("CONTRACT §4"), its file names, or a
relative Markdown link whose target is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = (
    "gateway", "rag_core", "telemetry", "alerting", "ragward", "bench", "tests", "docs", "deploy",
)
OUTSIDE = re.compile(r"CONTRACT §|\.\./shared/|\b(?:DESIGN|CONTRACT|PEERS|STYLE)\.md\b")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
THIS_FILE = Path(__file__).resolve()


def tracked_text_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "Makefile"]
    for top in SOURCES:
        files += [
            p for p in (REPO / top).rglob("*")
            if p.is_file() and p.suffix in {".py", ".md", ".yml", ".yaml", ".toml", ".sh"}
            and p.resolve() != THIS_FILE
        ]
    return files


def test_nothing_refers_to_the_brief_outside_the_repository() -> None:
    """No code comment, docstring or doc cites a file the repository does not hold."""
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in tracked_text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_relative_markdown_links_resolve() -> None:
    """Every relative link in README.md and docs/ names a file that exists."""
    broken = []
    pages = [REPO / "README.md", REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")]
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} → {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)
