"""Build and publish an index (``ragward ingest``: :mod:`rag_core.ingest_cli`).

The index belongs to a tenant, or is shared by every tenant
(:mod:`rag_core.ownership`).

Read documents (:mod:`rag_core.readers`), split them with the bilingual
splitter, embed the chunks in batches, build a ``VectorStoreIndex`` and publish
it atomically as a new version (:mod:`rag_core.store`). Progress bars go to
stderr; one summary line goes to stdout.

Files are untrusted input (:mod:`rag_core.guard`): one that leads outside its
root, is over a size limit or that its reader cannot parse is skipped with a
one-line reason and the rest is ingested (:class:`IngestResult` lists what was
skipped); ``fail_fast`` stops at the first such file, publishing nothing.
"""

from __future__ import annotations

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

from rag_core.backends import Backend, BackendConfig, build_backend
from rag_core.guard import IngestLimits, Skipped, collect_files
from rag_core.lexical import LexicalIndex
from rag_core.ownership import Ownership, check_reingest
from rag_core.readers import iter_documents
from rag_core.rerank import SentenceVectors, wants_sentence_vectors
from rag_core.store import delete_index, new_version_id, persist_version
from rag_core.stores import (
    StoreConfig,
    StoreKind,
    check_reachable,
    collection_name,
    drop_vectors,
    finish_vectors,
    new_vector_store,
    store_errors,
)
from rag_core.text import make_splitter
from ragward.errors import DependencyUnavailable

log = structlog.get_logger(__name__)

CHUNK_TOKENS = 256
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


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """Where indexes go and what a file may be: the index directory, the default name,
    the limits on untrusted files, the vector stores, and the embedding backend made
    when none is passed in."""

    indexes_dir: Path
    default_index: str
    limits: IngestLimits
    stores: StoreConfig
    backend: BackendConfig


def ingest(
    config: IngestConfig,
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
    (None: ``config.stores.kind``, ``RAGWARD_VECTOR_STORE``).

    Files that cannot be read are skipped and listed in ``IngestResult.skipped``.
    Raises ValueError for bad input (missing paths, nothing to ingest, bad name),
    :class:`FilesSkipped` when ``fail_fast`` meets a skipped file or every file was
    skipped, and the backend's domain errors when the embedding provider fails or
    :class:`~ragward.errors.DependencyUnavailable` when the vector store does.
    """
    started = time.perf_counter()
    name = _valid_index_name(index or config.default_index)
    ownership = Ownership(owner)
    check_reingest(config.indexes_dir, name, ownership)
    check_reachable(store or config.stores.kind, config.stores)  # before paying for embeddings
    roots = list(paths) + ([sample_corpus_dir()] if sample else [])
    if not roots:
        raise ValueError("nothing to ingest: give PATH... or --sample")
    files, skipped = collect_files(roots)
    if skipped and fail_fast:
        raise FilesSkipped(skipped[:1], "stopped at the first skipped file (--fail-fast)")
    if not files and not skipped:
        raise ValueError("no supported documents found (.txt .md .html .pdf .docx)")
    own_backend = backend is None
    backend = backend or build_backend(config.backend)
    try:
        with backend.tracker.track() as usage:
            documents, file_entries, unreadable = _read(
                files, config.limits,
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
                config, name, nodes, backend,
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
    config: IngestConfig,
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
    stores = config.stores
    kind: StoreKind = store or stores.kind
    version = new_version_id()
    dim = len(nodes[0].embedding or []) if nodes else 0
    collection = collection_name(name, version) if kind != "embedded" else None
    vector_store = new_vector_store(stores, kind, collection or "", dim)
    full_manifest = {**manifest, "store": kind, "collection": collection, "dim": dim,
                     "chunks": len(nodes)}
    try:
        with store_errors(kind):  # the store's writes (pgvector's COPY batches, Qdrant's upserts)
            vector_index = VectorStoreIndex(
                nodes=nodes,
                embed_model=backend.embed_model,
                storage_context=StorageContext.from_defaults(vector_store=vector_store),
                callback_manager=backend.tracker.callback_manager,
                transformations=[make_splitter()],
                store_nodes_override=True,  # the docstore keeps the nodes whatever the store
            )
        finish_vectors(stores, kind, collection or "", dim)
        ids = [n.node_id for n in nodes]
        lexical = LexicalIndex.build(
            ids, [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        )
        sentences = (SentenceVectors.build(nodes, backend.embed_model)
                     if wants_sentence_vectors(backend.embed_model) else None)
        return persist_version(
            config.indexes_dir, name, vector_index, full_manifest, lexical,
            sentences=sentences, version=version, stores=stores,
            rows=ids if kind != "embedded" else None,
        )
    except BaseException:
        try:
            drop_vectors(full_manifest, stores)  # never leave a table no version points at
        except DependencyUnavailable:  # the store is gone: say so, keep the first error
            log.warning("version_vectors_not_dropped", collection=collection,
                        hint="drop the table / collection by hand")
        raise


def delete(config: IngestConfig, name: str, *, owner: str | None) -> list[str]:
    """Delete index ``name`` of tenant ``owner`` (None: a shared index), vectors included,
    wherever they are stored. Another owner's index is refused like a re-ingest would be
    (ValueError); a missing one is :class:`~ragward.errors.NotFound`. Returns the
    versions removed; a running service stops answering from it at its next look."""
    check_reingest(config.indexes_dir, name, Ownership(owner))
    removed = delete_index(config.indexes_dir, name, stores=config.stores)
    log.info("index_deleted", index=name, versions=len(removed))
    return removed
