"""Ingest treats files as untrusted input: it never reads outside its roots, refuses
oversized files and zip bombs before extracting them, and one bad file is reported and
skipped instead of aborting the whole ingest (rag_core.guard, rag_core.readers)."""

from __future__ import annotations

import argparse
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from rag_core.configuration import ingest_config
from rag_core.embedding import HashedEmbedding
from rag_core.ingest import FilesSkipped, ingest
from rag_core.ingest_cli import main
from rag_core.store import list_index_names, load_snapshot
from rag_core.usage import UsageTracker
from ragward.settings import Settings, load_settings
from tests.integration.test_rag_ingest import write_docx, write_pdf

OUTSIDE_SECRET = "Zorblat outside-the-tree secret"


def _args(*paths: Path, index: str = "guarded", fail_fast: bool = False) -> argparse.Namespace:
    return argparse.Namespace(paths=list(paths), index=index, sample=False, fail_fast=fail_fast,
                              tenant="acme", shared=False)


def _indexed_text(settings: Settings, index: str) -> dict[str, str]:
    snap = load_snapshot(settings.indexes_dir, index, HashedEmbedding(),
                         UsageTracker().callback_manager)
    text: dict[str, str] = {}
    for node in snap.nodes:
        name = node.metadata["file_name"]
        text[name] = text.get(name, "") + node.get_content()
    return text


def write_docx_bomb(path: Path, inflated_bytes: int) -> None:
    """A well-formed .docx whose document.xml is one paragraph repeated: a few hundred
    kilobytes on disk that inflate to ``inflated_bytes`` of XML (and as many characters)."""
    write_docx(path, ["placeholder"])
    paragraph = b"<w:p><w:r><w:t>" + b"bomb " * 200 + b"</w:t></w:r></w:p>"
    chunk = paragraph * (1_000_000 // len(paragraph))
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z, \
            z.open("word/extra.xml", "w", force_zip64=True) as member:
        for _ in range(inflated_bytes // len(chunk)):
            member.write(chunk)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A corpus with one good file and symlinks leading out: to a file beside the tree,
    to /etc/passwd and to a directory outside; plus a harmless link inside the tree."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(OUTSIDE_SECRET)
    root = tmp_path / "corpus"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "good.md").write_text("# Lockers\n\nLocker keys cost a deposit of 20 EUR.")
    (root / "docs" / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "passwd.txt").symlink_to("/etc/passwd")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "alias.md").symlink_to(root / "docs" / "good.md")
    return root


def test_symlinks_out_of_the_root_are_skipped_and_reported(
    tree: Path, settings: Settings
) -> None:
    """A file symlink to a file outside the tree, one to /etc/passwd and a directory
    symlink out of the tree are never read; each is reported; links inside are fine."""
    result = ingest(ingest_config(settings), [tree], "guarded", show_progress=False)
    text = _indexed_text(settings, "guarded")
    assert set(text) == {"good.md"}
    everything = " ".join(text.values())
    assert OUTSIDE_SECRET not in everything and "root:x:0:0" not in everything
    reasons = {entry.path.name: entry.reason for entry in result.skipped}
    assert set(reasons) == {"leak.txt", "passwd.txt", "elsewhere"}
    assert all("outside the ingest root" in r for r in reasons.values())
    assert result.documents == 1


def test_files_named_one_by_one_cannot_lead_out_either(
    tree: Path, settings: Settings
) -> None:
    """`ragward ingest corpus/*` names each entry explicitly: a link among them that
    points outside its directory (here to /etc/passwd) is still skipped, not read."""
    named = sorted(p for p in tree.iterdir() if p.suffix)  # passwd.txt, alias.md
    result = ingest(ingest_config(settings), named, "guarded", show_progress=False)
    assert [entry.path.name for entry in result.skipped] == ["passwd.txt"]
    assert set(_indexed_text(settings, "guarded")) == {"good.md"}


def test_a_symlink_loop_is_skipped_not_a_crash(tmp_path: Path, settings: Settings) -> None:
    """Two links pointing at each other (resolve raises on them) are reported as a loop;
    a directory link back up the tree is not followed; the rest is ingested."""
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "ok.md").write_text("# Parking\n\nPermits are issued at desk 7.")
    (root / "a.md").symlink_to("b.md")
    (root / "b.md").symlink_to("a.md")
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)
    result = ingest(ingest_config(settings), [root], "guarded", show_progress=False)
    assert {(e.path.name, e.reason) for e in result.skipped} == {
        ("a.md", "symlink loop"), ("b.md", "symlink loop")}
    assert result.documents == 1


def test_cli_lists_skipped_symlinks_and_exits_3(
    tree: Path, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """The CLI publishes what it could read, prints one line per skipped file naming it
    and the reason, no traceback, keeps the progress bar and exits 3."""
    assert main(settings, _args(tree)) == 3
    out, err = capfd.readouterr()
    assert "ingested 1 documents" in out and "skipped 3 files" in out
    skipped_lines = [line for line in err.splitlines()
                     if line.startswith("ragward ingest: skipped")]
    assert len(skipped_lines) == 3
    assert any("passwd.txt: symlink leads outside the ingest root" in line
               for line in skipped_lines)
    assert "Traceback" not in err and "Reading" in err and "100%" in err
    assert list_index_names(settings.indexes_dir) == ["guarded"]


def test_a_docx_zip_bomb_is_refused_from_its_directory_quickly_and_in_little_memory(
    tmp_path: Path, settings: Settings
) -> None:
    """A ~300 KB .docx inflating to 100 MB is refused before extraction: in well under a
    second, with a few MB of memory, the reason naming the limit's variable."""
    root = tmp_path / "corpus"
    root.mkdir()
    bomb = root / "bomb.docx"
    write_docx_bomb(bomb, 100_000_000)
    assert bomb.stat().st_size < 400_000
    write_docx(root / "policy.docx", ["Bicycle storage", "Bikes go in the basement rack."])
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = ingest(ingest_config(settings), [root], "guarded", show_progress=False)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [skipped] = result.skipped
    assert skipped.path == bomb.resolve()
    assert "RAGWARD_INGEST_MAX_COMPRESSION_RATIO" in skipped.reason
    assert "extra.xml" in skipped.reason
    assert elapsed < 5 and peak < 30_000_000
    assert set(_indexed_text(settings, "guarded")) == {"policy.docx"}


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"ingest_max_archive_bytes": 1000}, "RAGWARD_INGEST_MAX_ARCHIVE_BYTES"),
        ({"ingest_max_archive_members": 2}, "RAGWARD_INGEST_MAX_ARCHIVE_MEMBERS"),
        ({"ingest_max_file_bytes": 100}, "RAGWARD_INGEST_MAX_FILE_BYTES"),
        ({"ingest_max_document_chars": 10}, "RAGWARD_INGEST_MAX_DOCUMENT_CHARS"),
    ],
)
def test_each_size_limit_is_configurable_and_named_in_the_reason(
    tmp_path: Path, override: dict[str, int], variable: str
) -> None:
    """Total uncompressed size and member count (from the zip directory), file size and
    extracted characters: each limit comes from its RAGWARD_INGEST_* setting."""
    settings = load_settings(data_dir=tmp_path / "data", **override)
    docx = tmp_path / "policy.docx"
    write_docx(docx, ["Bicycle storage", "Bikes go in the Wexford basement rack " * 20])
    with pytest.raises(FilesSkipped) as caught:
        ingest(ingest_config(settings), [docx], "guarded", show_progress=False)
    [skipped] = caught.value.skipped
    assert skipped.path == docx.resolve() and variable in skipped.reason


def _broken_corpus(root: Path) -> Path:
    root.mkdir()
    (root / "good.md").write_text("# Canteen\n\nThe canteen serves brunch on Sundays.")
    write_pdf(root / "manual.pdf", ["Printer toner is replaced on Mondays."])
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\n"
                                      b"trailer << /Root 1 0 R >>\n%%EOF\n")
    (root / "fake.docx").write_bytes(b"this is not a zip file at all")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    return root


def test_malformed_files_are_skipped_with_a_reason_and_the_rest_is_ingested(
    tmp_path: Path, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """A malformed PDF, a .docx that is not a zip and a text file that is not UTF-8 no
    longer abort the ingest: each is one line naming the file and the reason, the good
    files are published, and the exit code is 3."""
    root = _broken_corpus(tmp_path / "corpus")
    assert main(settings, _args(root)) == 3
    out, err = capfd.readouterr()
    assert "ingested 2 documents" in out and "skipped 3 files" in out
    assert "Traceback" not in err
    lines = {line.split(": ")[1].rsplit("/", 1)[-1]: line for line in err.splitlines()
             if line.startswith("ragward ingest: skipped")}
    assert set(lines) == {"broken.pdf", "fake.docx", "latin1.txt"}
    assert "not a valid zip container" in lines["fake.docx"]
    assert "UnicodeDecodeError" in lines["latin1.txt"]
    assert "cannot read" in lines["broken.pdf"]
    assert set(_indexed_text(settings, "guarded")) == {"good.md", "manual.pdf"}


def test_fail_fast_stops_at_the_first_bad_file_and_publishes_nothing(
    tmp_path: Path, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """`--fail-fast`: the first unreadable file (in sorted order) ends the ingest with
    its reason, exit 3, and no index is published."""
    root = _broken_corpus(tmp_path / "corpus")
    assert main(settings, _args(root, fail_fast=True)) == 3
    err = capfd.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("ragward ingest: skipped")]
    assert len(skipped) == 1 and "broken.pdf" in skipped[0]
    assert "--fail-fast" in err and "nothing published" in err and "Traceback" not in err
    assert list_index_names(settings.indexes_dir) == []


def test_nothing_readable_exits_3_and_publishes_nothing(
    tmp_path: Path, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """When every file is skipped there is nothing to publish: exit 3, the reasons."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "fake.docx").write_bytes(b"PK but not really")
    assert main(settings, _args(root)) == 3
    err = capfd.readouterr().err
    assert "fake.docx" in err and "every file was skipped" in err
    assert list_index_names(settings.indexes_dir) == []
