"""``ragward ingest PATH... [--index NAME] (--tenant T | --shared) [--sample]``: build
and publish an index.

The index belongs to tenant ``T``, or is shared by every tenant
(:mod:`rag_core.ownership`); the command asks for one of the two, except that
``--sample`` alone (the bundled public handbook) is shared.

Read documents (:mod:`rag_core.readers`), split them with the bilingual
splitter, embed the chunks in batches, build a ``VectorStoreIndex`` and publish
it atomically as a new version (:mod:`rag_core.store`). Progress bars go to
stderr; one summary line goes to stdout.

Files are untrusted input (:mod:`rag_core.guard`): one that leads outside its
root, is over a size limit or that its reader cannot parse is skipped with a
one-line reason and the rest is ingested; the command then exits 3 and lists
what it skipped. ``--fail-fast`` stops at the first such file, publishing nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import structlog
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.node_parser import MarkdownNodeParser
from llama_index.core.schema import BaseNode, Document, MetadataMode
from tqdm import tqdm

from rag_core.backends import Backend, build_backend
from rag_core.guard import IngestLimits, Skipped, collect_files
from rag_core.lexical import LexicalIndex
from rag_core.ownership import Ownership, check_reingest
from rag_core.readers import iter_documents
from rag_core.rerank import SentenceVectors, wants_sentence_vectors
from rag_core.store import delete_index, new_version_id, persist_version
from rag_core.stores import (
    StoreConfig,
    StoreKind,
    collection_name,
    drop_vectors,
    finish_vectors,
    new_vector_store,
)
from rag_core.text import make_splitter
from ragward.errors import NotFound, RagwardError
from ragward.identity import MAX_TENANT_CHARS, is_identity
from ragward.settings import Settings

log = structlog.get_logger(__name__)

CHUNK_TOKENS = 256
SKIPPED_EXIT = 3
INDEX_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def sample_corpus_dir() -> Path:
    """The bundled handbook (English and Chinese Markdown), inside the package."""
    return Path(str(resources.files("rag_core").joinpath("sample", "handbook")))


@dataclass(frozen=True)
class IngestResult:
    index: str
    version: str
    documents: int
    chunks: int
    seconds: float
    embedding_tokens: int
    skipped: tuple[Skipped, ...] = ()


class FilesSkipped(Exception):
    """Ingest stopped (``--fail-fast``) or found nothing readable: files were skipped."""

    def __init__(self, skipped: list[Skipped], why: str) -> None:
        super().__init__(why)
        self.skipped, self.why = skipped, why


def _valid_index_name(name: str) -> str:
    import re

    if not re.fullmatch(INDEX_NAME_PATTERN, name):
        raise ValueError(
            f"index name {name!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
        )
    return name


def build_nodes(documents: list[Document], *, show_progress: bool) -> list[BaseNode]:
    """Sections first (Markdown headings, also produced by the HTML reader), then
    bilingual sentence-aware chunks of at most ``CHUNK_TOKENS`` within a section.

    A chunk never straddles two sections, so a heading stays with its body.
    Only ``title`` and ``header_path`` are embedded with the text; the LLM sees none.
    """
    sections = MarkdownNodeParser(include_prev_next_rel=False)
    splitter = make_splitter(chunk_size=CHUNK_TOKENS)
    nodes: list[BaseNode] = []
    for doc in tqdm(documents, desc="Splitting", unit="doc", disable=not show_progress):
        section_nodes = sections.get_nodes_from_documents([doc])
        nodes.extend(splitter(section_nodes))  # a transform accepts nodes, not only documents
    for node in nodes:
        node.excluded_embed_metadata_keys = [
            k for k in node.metadata if k not in ("title", "header_path")
        ]
        node.excluded_llm_metadata_keys = list(node.metadata)
    return nodes


def embed_nodes(
    nodes: list[BaseNode], backend: Backend, *, show_progress: bool
) -> None:
    batch = max(1, backend.embed_model.embed_batch_size)
    with tqdm(total=len(nodes), desc="Embedding", unit="chunk", disable=not show_progress) as bar:
        for start in range(0, len(nodes), batch):
            group = nodes[start : start + batch]
            texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in group]
            vectors = backend.embed_model.get_text_embedding_batch(texts)
            for node, vector in zip(group, vectors, strict=True):
                node.embedding = vector
            bar.update(len(group))


def _read(
    files: list[Path], limits: IngestLimits, *, fail_fast: bool, show_progress: bool
) -> tuple[list[Document], list[dict[str, object]], list[Skipped]]:
    """The documents, the manifest's file entries and the files skipped while reading."""
    documents: list[Document] = []
    file_entries: list[dict[str, object]] = []
    skipped: list[Skipped] = []
    for file, docs in tqdm(
        iter_documents(files, limits),
        total=len(files),
        desc="Reading",
        unit="file",
        disable=not show_progress,
    ):
        if isinstance(docs, Skipped):
            log.warning("ingest_file_skipped", path=str(docs.path), reason=docs.reason)
            skipped.append(docs)
            if fail_fast:
                raise FilesSkipped([docs], "stopped at the first skipped file (--fail-fast)")
            continue
        documents.extend(docs)
        if docs:
            file_entries.append(
                {
                    "file_name": file.name,
                    "title": docs[0].metadata.get("title", ""),
                    "chars": sum(len(d.text) for d in docs),
                }
            )
    return documents, file_entries, skipped


def ingest(
    settings: Settings,
    paths: list[Path],
    index: str | None = None,
    *,
    sample: bool = False,
    owner: str | None = None,
    backend: Backend | None = None,
    show_progress: bool = True,
    fail_fast: bool = False,
    store: StoreKind | None = None,
) -> IngestResult:
    """Build ``index`` from ``paths`` (and the sample corpus) and publish it as a new version,
    owned by tenant ``owner`` (None: shared by every tenant), its vectors in ``store``
    (None: ``RAGWARD_VECTOR_STORE``).

    Files that cannot be read are skipped and listed in ``IngestResult.skipped``.
    Raises ValueError for bad input (missing paths, nothing to ingest, bad name),
    :class:`FilesSkipped` when ``fail_fast`` meets a skipped file or every file was
    skipped, and the backend's domain errors when the embedding provider fails.
    """
    started = time.perf_counter()
    name = _valid_index_name(index or settings.default_index)
    ownership = Ownership(owner)
    check_reingest(settings.indexes_dir, name, ownership)
    roots = list(paths) + ([sample_corpus_dir()] if sample else [])
    if not roots:
        raise ValueError("nothing to ingest: give PATH... or --sample")
    files, skipped = collect_files(roots)
    if skipped and fail_fast:
        raise FilesSkipped(skipped[:1], "stopped at the first skipped file (--fail-fast)")
    if not files and not skipped:
        raise ValueError("no supported documents found (.txt .md .html .pdf .docx)")
    own_backend = backend is None
    backend = backend or build_backend(settings)
    try:
        with backend.tracker.track() as usage:
            documents, file_entries, unreadable = _read(
                files, IngestLimits.from_settings(settings),
                fail_fast=fail_fast, show_progress=show_progress,
            )
            skipped += unreadable
            if not documents:
                if skipped:
                    raise FilesSkipped(skipped, "nothing ingested: every file was skipped")
                raise ValueError("the documents contain no text")
            nodes = build_nodes(documents, show_progress=show_progress)
            try:
                embed_nodes(nodes, backend, show_progress=show_progress)
            except Exception as exc:
                mapped = backend.map_error(exc)
                if mapped is not None:
                    raise mapped from exc
                raise
            version = publish(
                settings, name, nodes, backend,
                {
                    "embedding": backend.embedding_id,
                    "documents": len(file_entries),
                    "files": file_entries,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "sample": sample,
                    **ownership.manifest_fields(),
                },
                store=store,
            )
        result = IngestResult(
            index=name,
            version=version,
            documents=len(file_entries),
            chunks=len(nodes),
            seconds=time.perf_counter() - started,
            embedding_tokens=usage.embedding_tokens,
            skipped=tuple(skipped),
        )
        log.info(
            "index_published",
            index=name,
            version=version,
            documents=result.documents,
            chunks=result.chunks,
            skipped=len(skipped),
            seconds=round(result.seconds, 3),
        )
        return result
    finally:
        if own_backend:
            backend.close_sync()


def publish(
    settings: Settings,
    name: str,
    nodes: list[BaseNode],
    backend: Backend,
    manifest: dict[str, object],
    *,
    store: StoreKind | None = None,
) -> str:
    """Publish embedded ``nodes`` as a new version of index ``name``: vectors into their
    store, the docstore, BM25 and the sentence vectors (:mod:`rag_core.rerank`) beside the
    manifest, then the atomic switch."""
    config = StoreConfig.from_settings(settings)
    kind: StoreKind = store or config.kind
    version = new_version_id()
    dim = len(nodes[0].embedding or []) if nodes else 0
    collection = collection_name(name, version) if kind != "embedded" else None
    vector_store = new_vector_store(config, kind, collection or "", dim)
    full_manifest = {**manifest, "store": kind, "collection": collection, "dim": dim,
                     "chunks": len(nodes)}
    try:
        vector_index = VectorStoreIndex(
            nodes=nodes,
            embed_model=backend.embed_model,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            callback_manager=backend.tracker.callback_manager,
            transformations=[make_splitter()],
            store_nodes_override=True,  # the docstore keeps the nodes whatever the store
        )
        finish_vectors(config, kind, collection or "", dim)
        ids = [n.node_id for n in nodes]
        lexical = LexicalIndex.build(
            ids, [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        )
        sentences = (SentenceVectors.build(nodes, backend.embed_model)
                     if wants_sentence_vectors(backend.embed_model) else None)
        return persist_version(
            settings.indexes_dir, name, vector_index, full_manifest, lexical,
            sentences=sentences, version=version, stores=config,
            rows=ids if kind != "embedded" else None,
        )
    except BaseException:
        drop_vectors(full_manifest, config)  # never leave a table no version points at
        raise


def delete(settings: Settings, name: str, *, owner: str | None) -> list[str]:
    """Delete index ``name`` of tenant ``owner`` (None: a shared index), vectors included,
    wherever they are stored. Another owner's index is refused like a re-ingest would be
    (ValueError); a missing one is :class:`~ragward.errors.NotFound`. Returns the
    versions removed; a running service stops answering from it at its next look."""
    check_reingest(settings.indexes_dir, name, Ownership(owner))
    removed = delete_index(settings.indexes_dir, name, stores=StoreConfig.from_settings(settings))
    log.info("index_deleted", index=name, versions=len(removed))
    return removed


def main(settings: Settings, args: argparse.Namespace) -> int:
    """CLI entry: exit 0 on success, 2 on bad input, 1 when the embedding provider
    fails, 3 when files were skipped (the rest is published unless ``--fail-fast``)."""
    tenant, shared = getattr(args, "tenant", None), bool(getattr(args, "shared", False))
    sample = bool(getattr(args, "sample", False))
    try:
        if tenant is not None and not is_identity(tenant, MAX_TENANT_CHARS):
            raise ValueError(f"--tenant must be 1-{MAX_TENANT_CHARS} printable characters, "
                             "like a token's tenant")
        if getattr(args, "delete", False):
            return _delete_main(settings, args.index, tenant, shared)
        if tenant is None and not shared and args.paths:
            collect_files(list(args.paths))  # a wrong path is the first thing to hear about
            raise ValueError("say whose documents these are: --tenant T (only tenant T may "
                             "query the index) or --shared (every tenant may)")
        result = ingest(
            settings,
            list(args.paths or []),
            args.index,
            sample=sample,
            owner=tenant,
            show_progress=True,
            fail_fast=bool(getattr(args, "fail_fast", False)),
            store=getattr(args, "store", None),
        )
    except ValueError as exc:
        print(f"ragward ingest: {exc}", file=sys.stderr)
        return 2
    except RagwardError as exc:
        print(f"ragward ingest: {exc.message}", file=sys.stderr)
        return 1
    except FilesSkipped as exc:
        _print_skipped(exc.skipped)
        print(f"ragward ingest: {exc.why}; nothing published", file=sys.stderr)
        return SKIPPED_EXIT
    print(
        f"ingested {result.documents} documents ({result.chunks} chunks) into index "
        f"'{result.index}' ({Ownership(tenant).describe()}) version {result.version} "
        f"in {result.seconds:.2f}s"
        + (f"; skipped {len(result.skipped)} files" if result.skipped else "")
    )
    if result.skipped:
        _print_skipped(list(result.skipped))
        return SKIPPED_EXIT
    return 0


def _delete_main(settings: Settings, index: str | None, tenant: str | None,
                 shared: bool) -> int:
    """``ragward ingest --delete --index NAME (--tenant T | --shared)``."""
    if not index or (tenant is None and not shared):
        raise ValueError("--delete needs --index NAME and whose it is: --tenant T or --shared")
    try:
        removed = delete(settings, index, owner=tenant)
    except NotFound as exc:
        print(f"ragward ingest: {exc.message}", file=sys.stderr)
        return 2
    print(f"deleted index '{index}' and its vectors ({len(removed)} version(s))")
    return 0


def _print_skipped(skipped: list[Skipped]) -> None:
    """One line per skipped file: its path and why, never a traceback."""
    for entry in skipped:
        print(f"ragward ingest: skipped {entry.path}: {entry.reason}", file=sys.stderr)
