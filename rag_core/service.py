"""The RAG service: persisted indexes in memory, answered through a LlamaIndex query engine.

:func:`rag_core.configuration.build_service` wires a :class:`RagService` from
settings — its :class:`ServiceConfig`, the backend's embedding and LLM, the
per-request token counting of :class:`~rag_core.usage.UsageTracker`, and the
:class:`~rag_core.pricing.Pricing` table — and passes them in; LlamaIndex's global
``Settings`` is never used.

Every query builds a light ``RetrieverQueryEngine`` over the *current*
:class:`~rag_core.store.IndexSnapshot` of its index, so the snapshot it started
with stays alive until it finishes. A watcher checks each index's ``CURRENT``
pointer (one ``stat``) every ``watch_interval_s``; a new version is loaded in a
worker thread and swapped in with one assignment — in-flight queries finish on
the old snapshot, new ones get the new one, none fails.

Tenancy (:mod:`rag_core.ownership`): every query and listing takes the caller's
tenant; an index that tenant may not use is answered exactly like a missing one.

Errors: unknown index → :class:`~ragward.errors.NotFound`; provider failures →
``UpstreamError`` (502) / ``UpstreamUnavailable`` (503) / ``UpstreamTimeout``
(504); a whole query is bounded by ``ServiceConfig.query_timeout_s``
(``RAGWARD_LLM_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from llama_index.core.indices.prompt_helper import PromptHelper
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore

from rag_core.answer_stream import extractive_answer, llm_answer
from rag_core.answerer import NO_ANSWER_EN, QA_PROMPT
from rag_core.backends import Backend
from rag_core.chat import (
    Conversation,
    conversation,
)
from rag_core.ownership import Ownership, current_ownership
from rag_core.pricing import Pricing
from rag_core.retriever import Mode, SnapshotRetriever
from rag_core.schemas import (
    BatchRequest,
    BatchResponse,
    ChatEvent,
    ChatRequest,
    EndEvent,
    ErrorEvent,
    IndexInfo,
    QueryRequest,
    QueryResponse,
    Source,
    SourcesEvent,
    Usage,
    check_limits,
)
from rag_core.store import IndexSnapshot, current_stamp, list_index_names, load_snapshot
from rag_core.stores import StoreConfig
from rag_core.synthesizer import SinglePassSynthesizer
from ragward.errors import DependencyUnavailable, NotFound, RagwardError, UpstreamTimeout

log = structlog.get_logger(__name__)

SOURCE_METADATA_KEYS = ("file_name", "title", "header_path", "page_label")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Where the indexes are, how they are searched, and the bounds of one request."""

    indexes_dir: Path
    default_index: str
    retrieval: Mode
    stores: StoreConfig  # how to reach vectors kept outside the index directory
    query_timeout_s: float  # a whole query, retrieval and answer
    chat_memory_tokens: int  # earlier turns kept as a conversation's memory
    max_question_chars: int
    max_batch: int


class RagService:
    """Answers queries (the API in docs/api.md) from the persisted indexes under ``indexes_dir``.

    Owns ``backend`` from construction on: :meth:`stop` closes its clients.
    """

    def __init__(
        self,
        config: ServiceConfig,
        backend: Backend,
        pricing: Pricing,
        *,
        watch_interval_s: float = 1.0,
        query_timeout_s: float | None = None,
    ) -> None:
        self._root = config.indexes_dir
        self._default_index = config.default_index
        self._retrieval = config.retrieval
        self._stores = config.stores
        self._backend = backend
        self._pricing = pricing
        self._watch_interval_s = watch_interval_s
        self._timeout_s = query_timeout_s or config.query_timeout_s
        self._memory_tokens = config.chat_memory_tokens
        self._limits = {"max_question_chars": config.max_question_chars,
                        "max_batch": config.max_batch}
        cm = backend.tracker.callback_manager
        self._synthesizer = SinglePassSynthesizer(
            llm=backend.llm,
            callback_manager=cm,
            prompt_helper=PromptHelper.from_llm_metadata(backend.llm.metadata),
            text_qa_template=QA_PROMPT,
            empty_response=NO_ANSWER_EN,
            gen_ai=(backend.name, backend.llm_model),
        )
        self._snapshots: dict[str, IndexSnapshot] = {}
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._rejected: dict[str, str] = {}
        # indexes not loaded because their vector store did not answer: queried, they say
        # so (503) instead of "does not exist", and the next query tries the load again
        self._unavailable: dict[str, str] = {}
        self._owners: dict[str, Ownership] = {}  # of every index loaded or rejected
        self._locks: dict[str, asyncio.Lock] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        for model in (backend.llm_model, backend.embedding_model):
            if not pricing.known(model):
                log.warning("model_price_unknown", model=model, cost_usd=0)

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Load every persisted index, warm the query path up, start watching. Idempotent."""
        if self._started:
            return
        await self.refresh()
        if self._backend.name == "local":
            for snapshot in list(self._snapshots.values()):
                await self._warm_up(snapshot)
        self._watcher = asyncio.create_task(self._watch(), name="rag-core-index-watcher")
        self._started = True
        log.info(
            "rag_service_started",
            backend=self._backend.name,
            retrieval=self._retrieval,
            indexes={n: s.version for n, s in self._snapshots.items()},
        )

    async def stop(self) -> None:
        """Stop watching and close the backend's clients. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._backend.aclose()

    @property
    def ready(self) -> bool:
        return self.not_ready_reason is None

    @property
    def not_ready_reason(self) -> str | None:
        if not self._started:
            return "starting: indexes not loaded yet"
        if self._stopped:
            return "stopped"
        if self._default_index in self._snapshots:
            return None
        if self._default_index in self._rejected:
            return self._rejected[self._default_index]
        if self._default_index in self._unavailable:
            return self._unavailable[self._default_index]
        return (
            f"index '{self._default_index}' is not loaded: run `ragward ingest --sample` "
            "or `ragward ingest PATH`"
        )

    # -- indexes ---------------------------------------------------------------
    def index_version(self, name: str) -> str | None:
        snapshot = self._snapshots.get(name)
        return snapshot.version if snapshot else None

    def indexes(self, tenant: str | None = None) -> list[IndexInfo]:
        """The loaded indexes ``tenant`` may use, by name (None: every index)."""
        return [
            IndexInfo(
                name=s.name,
                version=s.version,
                documents=s.documents,
                chunks=len(s.nodes),
                model=str(s.manifest.get("embedding", "")),
                owner=self._owners[s.name].owner,
                shared=self._owners[s.name].is_shared,
            )
            for s in sorted(self._snapshots.values(), key=lambda s: s.name)
            if self._owners[s.name].visible_to(tenant)
        ]

    async def refresh(self, only: str | None = None) -> None:
        """Load indexes that appeared or whose CURRENT pointer changed since the last look."""
        names = [only] if only else sorted(set(list_index_names(self._root)) | set(self._snapshots))
        for name in names:
            stamp = current_stamp(self._root, name)
            if stamp is not None and stamp == self._stamps.get(name):
                continue
            lock = self._locks.setdefault(name, asyncio.Lock())
            async with lock:
                stamp = current_stamp(self._root, name)
                if stamp is None:
                    self._forget(name)
                elif stamp != self._stamps.get(name):
                    await self._load(name, stamp)

    def _forget(self, name: str) -> None:
        """The index was deleted: stop answering from it (in-flight queries finish)."""
        dropped = self._snapshots.pop(name, None)
        self._stamps.pop(name, None)
        self._rejected.pop(name, None)
        self._unavailable.pop(name, None)
        self._owners.pop(name, None)
        if dropped is not None:
            log.info("index_unloaded", index=name, version=dropped.version)

    async def _load(self, name: str, stamp: tuple[int, int]) -> None:
        started = time.perf_counter()
        try:
            snapshot = await asyncio.to_thread(
                load_snapshot,
                self._root,
                name,
                self._backend.embed_model,
                self._backend.tracker.callback_manager,
                stores=self._stores,
            )
        except DependencyUnavailable as exc:  # its store is down: try again when asked
            log.error("index_load_failed", index=name, error=exc.message,
                      exc_type=type(exc).__name__)
            ownership = current_ownership(self._root, name)
            if name not in self._snapshots and ownership is not None:
                self._owners[name], self._unavailable[name] = ownership, exc.message
            return
        except Exception as exc:  # a broken version must not take the service down
            log.error("index_load_failed", index=name, error=str(exc), exc_type=type(exc).__name__)
            return
        ownership, recorded = Ownership.from_manifest(snapshot.manifest)
        if not recorded:
            log.warning("index_owner_unrecorded", index=name, treated_as="shared",
                        hint="re-ingest it with --tenant T or --shared")
        self._owners[name] = ownership
        built_with = str(snapshot.manifest.get("embedding", ""))
        if built_with != self._backend.embedding_id:
            reason = (
                f"index '{name}' was built with embedding '{built_with}' but this service "
                f"uses '{self._backend.embedding_id}'; re-ingest it"
            )
            self._rejected[name] = reason
            self._stamps[name] = stamp
            log.error("index_embedding_mismatch", index=name, built_with=built_with,
                      expected=self._backend.embedding_id)
            return
        previous = self._snapshots.get(name)
        if self._started and self._backend.name == "local":
            await self._warm_up(snapshot)
        self._snapshots[name] = snapshot  # the swap: one assignment
        self._stamps[name] = stamp
        self._rejected.pop(name, None)
        self._unavailable.pop(name, None)
        log.info(
            "index_loaded",
            index=name,
            version=snapshot.version,
            previous=previous.version if previous else None,
            chunks=len(snapshot.nodes),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_interval_s)
            try:
                await self.refresh()
            except Exception as exc:
                log.error("index_watch_failed", error=str(exc), exc_type=type(exc).__name__)

    async def _warm_up(self, snapshot: IndexSnapshot) -> None:
        """Run the whole query path once so lazy imports and caches are paid before traffic."""
        if not snapshot.nodes:
            return
        text = snapshot.nodes[0].get_content(metadata_mode=MetadataMode.NONE)
        try:
            await self._answer(snapshot, text[:200] or "warm up", 3)
        except DependencyUnavailable:  # its store is down now: serve it (503s) until it is back
            log.warning("index_warm_up_skipped", index=snapshot.name, version=snapshot.version)

    def _visible(self, name: str, tenant: str | None) -> bool:
        owner = self._owners.get(name)
        return owner is not None and owner.visible_to(tenant)

    async def _snapshot(self, name: str, tenant: str | None) -> IndexSnapshot:
        """The index ``tenant`` asked for. Another tenant's index takes the same path
        and raises the same error as a missing one: nothing tells them apart."""
        if not self._visible(name, tenant) or name not in self._snapshots:
            await self.refresh(only=name)  # maybe ingested a moment ago
        if not self._visible(name, tenant):
            raise NotFound(f"index '{name}' does not exist")
        snapshot = self._snapshots.get(name)
        if snapshot is None and name in self._unavailable:
            raise DependencyUnavailable(self._unavailable[name])
        if snapshot is None:
            raise NotFound(self._rejected.get(name) or f"index '{name}' does not exist")
        return snapshot

    # -- queries ---------------------------------------------------------------
    async def _answer(self, snapshot: IndexSnapshot, question: str, top_k: int) -> QueryResponse:
        backend = self._backend
        cm = backend.tracker.callback_manager
        engine = RetrieverQueryEngine(
            retriever=SnapshotRetriever(
                snapshot, backend.embed_model, top_k, cm, mode=self._retrieval
            ),
            response_synthesizer=self._synthesizer,
            callback_manager=cm,
        )
        with backend.tracker.track() as counted:
            try:
                async with asyncio.timeout(self._timeout_s):
                    response = await engine.aquery(question)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"no answer within {self._timeout_s:g}s"
                ) from None
            except RagwardError:
                raise
            except Exception as exc:
                mapped = backend.map_error(exc)
                if mapped is not None:
                    raise mapped from exc
                raise
            prompt, completion = counted.prompt_tokens, counted.completion_tokens
            embedding = counted.embedding_tokens
        cost = self._pricing.cost(
            llm_model=backend.llm_model,
            embedding_model=backend.embedding_model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            embedding_tokens=embedding,
        )
        return QueryResponse(
            answer=str(getattr(response, "response", "") or ""),
            sources=[_source(hit) for hit in response.source_nodes],
            usage=Usage(
                prompt_tokens=prompt,
                completion_tokens=completion,
                embedding_tokens=embedding,
                total_tokens=prompt + completion + embedding,
                cost_usd=cost,
            ),
        )

    async def query_with_version(
        self, req: QueryRequest, *, tenant: str | None, subject: str, request_id: str
    ) -> tuple[QueryResponse, str]:
        """The answer and the index version that produced it."""
        started = time.perf_counter()
        check_limits([req.question], **self._limits)
        snapshot = await self._snapshot(req.index, tenant)
        result = await self._answer(snapshot, req.question, req.top_k)
        result.request_id = request_id
        log.debug(
            "query_answered",
            request_id=request_id,
            tenant=tenant,
            subject=subject,
            index=snapshot.name,
            version=snapshot.version,
            total_tokens=result.usage.total_tokens,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return result, snapshot.version

    async def query(
        self, req: QueryRequest, *, tenant: str | None, subject: str, request_id: str
    ) -> QueryResponse:
        result, _ = await self.query_with_version(
            req, tenant=tenant, subject=subject, request_id=request_id
        )
        return result

    async def query_batch_with_version(
        self, req: BatchRequest, *, tenant: str | None, subject: str, request_id: str
    ) -> tuple[BatchResponse, str]:
        """All questions run concurrently on one snapshot; the first failure fails the batch."""
        check_limits(req.questions, **self._limits)
        snapshot = await self._snapshot(req.index, tenant)
        outcomes: list[Any] = await asyncio.gather(
            *(self._answer(snapshot, q, req.top_k) for q in req.questions),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        for outcome in outcomes:
            outcome.request_id = request_id
        log.debug(
            "batch_answered",
            request_id=request_id,
            tenant=tenant,
            subject=subject,
            index=snapshot.name,
            version=snapshot.version,
            questions=len(outcomes),
        )
        return BatchResponse(results=outcomes), snapshot.version

    async def query_batch(
        self, req: BatchRequest, *, tenant: str | None, subject: str, request_id: str
    ) -> BatchResponse:
        result, _ = await self.query_batch_with_version(
            req, tenant=tenant, subject=subject, request_id=request_id
        )
        return result

    # -- chat (streamed) -------------------------------------------------------
    async def open_chat(
        self, req: ChatRequest, *, tenant: str | None, subject: str, request_id: str
    ) -> tuple[str, AsyncIterator[ChatEvent]]:
        """The index version and the conversation's answer as chat events.

        Unknown index and a malformed conversation raise here, before any event;
        failures after that arrive as one final ``ErrorEvent``. Closing the
        iterator early (a client that left) cancels the retrieval or the LLM call.
        """
        snapshot = await self._snapshot(req.index, tenant)
        conv = conversation(req.messages, memory_tokens=self._memory_tokens,
                            count=self._backend.tracker.count)
        log.debug("chat_opened", request_id=request_id, tenant=tenant, subject=subject,
                  index=snapshot.name, memory_turns=len(conv.memory))
        return snapshot.version, self._chat_events(snapshot, req, conv)

    async def _chat_events(
        self, snapshot: IndexSnapshot, req: ChatRequest, conv: Conversation
    ) -> AsyncIterator[ChatEvent]:
        backend = self._backend
        cm = backend.tracker.callback_manager
        with backend.tracker.track() as counted:
            try:
                async with asyncio.timeout(self._timeout_s):
                    hits = await SnapshotRetriever(
                        snapshot, backend.embed_model, req.top_k, cm, mode=self._retrieval
                    ).aretrieve(conv.retrieval_query)
                yield SourcesEvent(sources=[_source(hit) for hit in hits])
                chunks = [h.node.get_content(metadata_mode=MetadataMode.NONE) for h in hits]
                if backend.name == "local":
                    events = extractive_answer(self._synthesizer, backend.tracker.count,
                                               self._timeout_s, conv.question, chunks, req)
                else:
                    events = llm_answer(backend, conv, chunks, req)
                async for event in events:
                    if isinstance(event, EndEvent):
                        event.usage.embedding_tokens = counted.embedding_tokens
                        if not event.usage.prompt_tokens:
                            event.usage.prompt_tokens = counted.prompt_tokens
                        u = event.usage
                        u.total_tokens = u.prompt_tokens + u.completion_tokens + u.embedding_tokens
                        u.cost_usd = self._pricing.cost(
                            llm_model=backend.llm_model, embedding_model=backend.embedding_model,
                            prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                            embedding_tokens=u.embedding_tokens,
                        )
                    yield event
            except TimeoutError:
                yield ErrorEvent(code="upstream_timeout", status=504,
                                 message=f"no answer within {self._timeout_s:g}s")
            except RagwardError as exc:
                yield ErrorEvent(code=exc.code, status=exc.status, message=exc.message)
            except Exception as exc:
                mapped = backend.map_error(exc)
                if mapped is None:
                    log.error("chat_failed", exc_type=type(exc).__name__)
                    mapped = RagwardError()
                yield ErrorEvent(code=mapped.code, status=mapped.status, message=mapped.message)


def _source(hit: NodeWithScore) -> Source:
    node = hit.node
    return Source(
        id=node.node_id,
        text=node.get_content(metadata_mode=MetadataMode.NONE),
        score=round(float(hit.score), 6) if hit.score is not None else None,
        metadata={k: node.metadata[k] for k in SOURCE_METADATA_KEYS if k in node.metadata},
    )

