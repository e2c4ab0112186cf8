"""Ingest: every supported format, the CLI's exits and progress, atomic versions."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import pytest

from rag_core.configuration import ingest_config
from rag_core.ingest import ingest
from rag_core.ingest_cli import main
from rag_core.store import CURRENT, VERSIONS, list_index_names, load_snapshot, read_manifest
from rag_core.usage import UsageTracker
from ragward.settings import Settings, load_settings


def write_docx(path: Path, paragraphs: list[str]) -> None:
    """A minimal but valid .docx (what python-docx would write, without the dependency)."""
    body = "".join(
        f'<w:p><w:r><w:t xml:space="preserve">{p}</w:t></w:r></w:p>' for p in paragraphs
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.'
            'org/package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
            '"application/xml"/><Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        z.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
            'schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="word/document.xml"/></Relationships>',
        )
        z.writestr(
            "word/document.xml",
            '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.'
            f'openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>',
        )


def write_pdf(path: Path, lines: list[str]) -> None:
    """A one-page PDF with Helvetica text and a correct cross-reference table."""
    text = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({s}) '" for s in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(text)} >>\nstream\n{text}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    out += trailer.encode()
    path.write_bytes(bytes(out))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "nested").mkdir(parents=True)
    (root / "notes.txt").write_text("Parking permits are issued by Quillon Vexbury at desk 7.")
    (root / "guide.md").write_text("# Guide\n\n## Lockers\n\nLocker keys cost a deposit of 20 EUR.")
    (root / "nested" / "page.html").write_text(
        "<html><head><title>Canteen</title><style>.x{color:red}</style>"
        "<script>var secret='scriptword';</script></head><body><nav>Home | About</nav>"
        "<h1>Canteen hours</h1><p>The canteen serves <b>brunch</b> from 10:00 on Sundays.</p>"
        "<ul><li>Vegan options daily</li></ul></body></html>"
    )
    write_docx(root / "policy.docx", ["Bicycle storage", "Bikes go in the Wexford basement rack."])
    write_pdf(root / "manual.pdf", ["Printer toner is replaced by Ozymand Kettleworth."])
    (root / "ignored.csv").write_text("a,b\n1,2\n")
    (root / ".hidden.md").write_text("# hidden\nnever ingested")
    return root


def test_every_supported_format_is_read(corpus: Path, settings: Settings) -> None:
    """.txt, .md, .html (visible text only), .docx and .pdf all reach the index."""
    result = ingest(ingest_config(settings), [corpus], "formats", show_progress=False)
    assert result.documents == 5
    snap = load_snapshot(settings.indexes_dir, "formats", _embed(), UsageTracker().callback_manager)
    text = {n.metadata["file_name"]: "" for n in snap.nodes}
    for node in snap.nodes:
        text[node.metadata["file_name"]] += node.get_content()
    assert set(text) == {"notes.txt", "guide.md", "page.html", "policy.docx", "manual.pdf"}
    assert "Quillon Vexbury" in text["notes.txt"]
    assert "20 EUR" in text["guide.md"]
    assert "brunch from 10:00" in text["page.html"] and "# Canteen hours" in text["page.html"]
    assert "scriptword" not in text["page.html"] and "color:red" not in text["page.html"]
    assert "Wexford basement" in text["policy.docx"]
    assert "Ozymand Kettleworth" in text["manual.pdf"]
    titles = {n.metadata["file_name"]: n.metadata["title"] for n in snap.nodes}
    assert titles["page.html"] == "Canteen" and titles["guide.md"] == "Guide"
    assert [n.metadata.get("page_label") for n in snap.nodes if n.metadata["file_name"] ==
            "manual.pdf"] == ["1"]


def _embed():  # type: ignore[no-untyped-def]
    from rag_core.embedding import HashedEmbedding

    return HashedEmbedding()


def test_each_ingest_is_a_new_atomic_version_and_two_are_kept(
    corpus: Path, settings: Settings
) -> None:
    """Every ingest publishes a new version id via CURRENT; older ones beyond two go."""
    config = ingest_config(settings)
    versions = [ingest(config, [corpus], None, show_progress=False).version for _ in range(3)]
    assert len(set(versions)) == 3 and versions == sorted(versions)
    base = settings.indexes_dir / "default"
    assert (base / CURRENT).read_text().strip() == versions[-1]
    assert sorted(p.name for p in (base / VERSIONS).iterdir()) == versions[1:]
    manifest = read_manifest(base / VERSIONS / versions[-1])
    assert manifest["version"] == versions[-1] and manifest["embedding"].startswith("local:")
    assert list_index_names(settings.indexes_dir) == ["default"]


def _args(*paths: Path, index: str | None = None, sample: bool = False) -> argparse.Namespace:
    return argparse.Namespace(paths=list(paths), index=index, sample=sample)


def test_cli_sample_shows_progress_on_stderr_and_a_summary_on_stdout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`ragward ingest --sample`: progress bars on stderr, one summary line on stdout."""
    assert main(load_settings(data_dir=tmp_path), _args(sample=True, index="handbook")) == 0
    out, err = capfd.readouterr()
    assert "ingested 16 documents" in out and "'handbook'" in out
    for stage in ("Reading", "Splitting", "Embedding"):
        assert stage in err and "100%" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_args(Path("/nonexistent/ragward")), "no such file or directory"),
        (_args(), "nothing to ingest"),
        (_args(sample=True, index="bad name!"), "index name"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(
    settings: Settings, capfd: pytest.CaptureFixture[str], args: argparse.Namespace, message: str
) -> None:
    """Bad input: exit code 2 and a one-line reason, nothing published."""
    assert main(settings, args) == 2
    err = capfd.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list_index_names(settings.indexes_dir) == []


def test_cli_rejects_an_unsupported_file(tmp_path: Path, settings: Settings) -> None:
    """A file of an unknown type given explicitly is an error, not silently skipped."""
    csv = tmp_path / "x.csv"
    csv.write_text("a,b")
    assert main(settings, _args(csv)) == 2
