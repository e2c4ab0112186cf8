"""Document loading: LlamaIndex's SimpleDirectoryReader, plus an HTML reader.

SimpleDirectoryReader reads ``.txt`` and ``.md`` as text, ``.pdf`` with pypdf
(one document per page) and ``.docx`` with docx2txt. It has no HTML reader of
its own (it would index the tags), so :class:`HtmlTextReader` extracts the
visible text with BeautifulSoup. Each document gets a small, stable metadata
set: ``file_name``, ``title`` and, for PDFs, ``page_label``. Only ``title`` is
embedded with the text; the LLM sees no metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from llama_index.core import SimpleDirectoryReader
from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})
_DROP_TAGS = ("script", "style", "noscript", "nav", "header", "footer", "template", "svg")
_BLOCK_TAGS = ("p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "div", "section", "br")


class HtmlTextReader(BaseReader):
    """Visible text of an HTML page, one line per block, headings kept as Markdown."""

    def load_data(self, file: Path, extra_info: dict[str, Any] | None = None) -> list[Document]:
        soup = BeautifulSoup(Path(file).read_bytes(), "html.parser")
        for tag in soup(_DROP_TAGS):
            tag.decompose()
        title = soup.title.get_text(strip=True) if soup.title else ""
        if soup.title:
            soup.title.decompose()
        for level in range(1, 7):
            for heading in soup.find_all(f"h{level}"):
                heading.insert(0, "#" * level + " ")
        for block in soup.find_all(_BLOCK_TAGS):
            block.append("\n")
        lines = [" ".join(line.split()) for line in soup.get_text().splitlines()]
        text = "\n".join(line for line in lines if line)
        metadata = dict(extra_info or {})
        if title:
            metadata["title"] = title
        return [Document(text=text, metadata=metadata)]


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Supported files under ``paths`` (directories recursively), sorted, de-duplicated.

    Raises ValueError naming a path that does not exist or a file of an
    unsupported type given explicitly.
    """
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if (
                    file.is_file()
                    and file.suffix.lower() in SUPPORTED_SUFFIXES
                    and not any(part.startswith(".") for part in file.relative_to(path).parts)
                ):
                    found[file.resolve()] = None
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise ValueError(
                    f"{path}: unsupported file type (supported: "
                    f"{', '.join(sorted(SUPPORTED_SUFFIXES))})"
                )
            found[path.resolve()] = None
        else:
            raise ValueError(f"{path}: no such file or directory")
    return list(found)


def _title_of(text: str, fallback: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line:
            return line[:120] if len(line) <= 120 else fallback
    return fallback


def _clean_metadata(doc: Document, file: Path) -> Document:
    raw = doc.metadata
    metadata: dict[str, Any] = {
        "file_name": file.name,
        "title": raw.get("title") or _title_of(doc.text, file.stem),
    }
    if "page_label" in raw:
        metadata["page_label"] = raw["page_label"]
    doc.metadata = metadata
    doc.excluded_embed_metadata_keys = [k for k in metadata if k != "title"]
    doc.excluded_llm_metadata_keys = list(metadata)
    return doc


def iter_documents(files: list[Path]) -> Iterator[tuple[Path, list[Document]]]:
    """(file, its documents) for each file, in order; empty documents dropped."""
    html = HtmlTextReader()
    reader = SimpleDirectoryReader(
        input_files=[str(f) for f in files],
        file_extractor={".html": html, ".htm": html},
        filename_as_id=True,
        raise_on_error=True,
    )
    for file in files:
        docs = reader.load_file(
            input_file=file,
            file_metadata=reader.file_metadata,
            file_extractor=reader.file_extractor,
            filename_as_id=True,
            encoding="utf-8",
            errors="strict",
            raise_on_error=True,
        )
        yield file, [_clean_metadata(d, file) for d in docs if d.text.strip()]
