"""Document loading: LlamaIndex's SimpleDirectoryReader, plus an HTML reader.

SimpleDirectoryReader reads ``.txt`` and ``.md`` as text, ``.pdf`` with pypdf
(one document per page) and ``.docx`` with docx2txt. It has no HTML reader of
its own (it would index the tags), so :class:`HtmlTextReader` extracts the
visible text with BeautifulSoup. Each document gets a small, stable metadata
set: ``file_name``, ``title`` and, for PDFs, ``page_label``. Only ``title`` is
embedded with the text; the LLM sees no metadata.

Which files may be read at all, and how large, is :mod:`rag_core.guard`'s job;
every file is checked there right before its reader opens it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from llama_index.core import SimpleDirectoryReader
from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import Document

from rag_core.guard import FileRefused, IngestLimits, Skipped, check_file, over_limit

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


def iter_documents(
    files: list[Path], limits: IngestLimits
) -> Iterator[tuple[Path, list[Document] | Skipped]]:
    """(file, its documents) for each file, in order, empty documents dropped; or
    (file, :class:`~rag_core.guard.Skipped`) when the file is refused or its reader fails.

    A reader's failure (a malformed PDF, a docx that is not a zip, text that is not
    UTF-8) is the file's problem, not the ingest's: it becomes a one-line reason.
    """
    html = HtmlTextReader()
    reader = SimpleDirectoryReader(
        input_files=[str(f) for f in files],
        file_extractor={".html": html, ".htm": html},
        filename_as_id=True,
        raise_on_error=True,
    )
    for file in files:
        try:
            check_file(file, limits)
            docs = reader.load_file(
                input_file=file,
                file_metadata=reader.file_metadata,
                file_extractor=reader.file_extractor,
                filename_as_id=True,
                encoding="utf-8",
                errors="strict",
                raise_on_error=True,
            )
            chars = sum(len(d.text) for d in docs)
            if chars > limits.max_document_chars:
                raise over_limit("extracted characters", chars, limits.max_document_chars,
                                 "ingest_max_document_chars")
        except FileRefused as exc:
            yield file, Skipped(file, exc.reason)
            continue
        except Exception as exc:  # any reader, any library: report the file, keep going
            yield file, Skipped(file, reader_failure(exc))
            continue
        yield file, [_clean_metadata(d, file) for d in docs if d.text.strip()]


def reader_failure(exc: BaseException) -> str:
    """One line for a reader's exception: SimpleDirectoryReader wraps the real one."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    detail = " ".join(str(cause).split())[:200]
    return f"cannot read: {type(cause).__name__}" + (f": {detail}" if detail else "")
