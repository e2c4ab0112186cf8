"""Settings → rag_core's own configuration, in one place.

The service, ingest, the backends and the stores each take a small configuration
(:class:`~rag_core.service.ServiceConfig`, :class:`~rag_core.ingest.IngestConfig`,
:class:`~rag_core.backends.BackendConfig`, :class:`~rag_core.stores.StoreConfig`,
:class:`~rag_core.guard.IngestLimits`); this module is the one part of rag_core that
reads ``Settings`` for them, called by the entry points (``ragward rag-core``,
``ragward ingest``, ``ragward serve``, the evaluation).
"""

from __future__ import annotations

from rag_core.backends import Backend, BackendConfig, OpenAIConfig, build_backend
from rag_core.guard import IngestLimits
from rag_core.ingest import IngestConfig
from rag_core.pricing import Pricing
from rag_core.retriever import Mode
from rag_core.service import RagService, ServiceConfig
from rag_core.stores import StoreConfig
from ragward.settings import Settings, secret_value


def retrieval_mode(settings: Settings) -> Mode:
    """The configured mode, ``auto`` resolved: dense on both backends (measured best
    offline on the paraphrase sets: make eval; docs/rag_core.md)."""
    return "dense" if settings.retrieval == "auto" else settings.retrieval


def store_config(settings: Settings) -> StoreConfig:
    return StoreConfig(
        kind=settings.vector_store,
        pgvector_dsn=secret_value(settings.pgvector_dsn),
        qdrant_url=settings.qdrant_url,
        qdrant_api_key=secret_value(settings.qdrant_api_key),
        qdrant_path=settings.data_dir / "qdrant",
    )


def ingest_limits(settings: Settings) -> IngestLimits:
    return IngestLimits(
        max_file_bytes=settings.ingest_max_file_bytes,
        max_document_chars=settings.ingest_max_document_chars,
        max_archive_bytes=settings.ingest_max_archive_bytes,
        max_archive_members=settings.ingest_max_archive_members,
        max_compression_ratio=settings.ingest_max_compression_ratio,
    )


def backend_config(settings: Settings) -> BackendConfig:
    return BackendConfig(
        llm=settings.llm,
        local_embedding=settings.local_embedding,
        model_dir=settings.model_dir,
        openai=OpenAIConfig(
            api_key=secret_value(settings.openai_api_key),
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            embedding_model=settings.openai_embedding_model,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        ),
    )


def ingest_config(settings: Settings) -> IngestConfig:
    return IngestConfig(
        indexes_dir=settings.indexes_dir,
        default_index=settings.default_index,
        limits=ingest_limits(settings),
        stores=store_config(settings),
        backend=backend_config(settings),
    )


def service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        indexes_dir=settings.indexes_dir,
        default_index=settings.default_index,
        retrieval=retrieval_mode(settings),
        stores=store_config(settings),
        query_timeout_s=settings.llm_timeout_s,
        chat_memory_tokens=settings.chat_memory_tokens,
        max_question_chars=settings.max_question_chars,
        max_batch=settings.max_batch,
    )


def build_service(
    settings: Settings,
    *,
    backend: Backend | None = None,
    pricing: Pricing | None = None,
    watch_interval_s: float = 1.0,
) -> RagService:
    """The factory: every collaborator made from settings unless passed in."""
    return RagService(
        service_config(settings),
        backend or build_backend(backend_config(settings)),
        pricing or Pricing.from_file(settings.pricing_file),
        watch_interval_s=watch_interval_s,
    )
