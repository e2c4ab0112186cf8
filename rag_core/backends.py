"""The model collaborators of rag_core, chosen by ``RAGWARD_LLM``.

A :class:`Backend` bundles what the query path needs — embedding model, LLM,
their names for pricing, and the shared callback manager of the
:class:`~rag_core.usage.UsageTracker` — built from settings by
:func:`build_backend`. Nothing here touches LlamaIndex's global ``Settings``.

* ``local``: the offline embedding ``RAGWARD_LOCAL_EMBEDDING`` names —
  :class:`~rag_core.fused_encoder.FusedEncoderEmbedding` (USE multilingual v3 with
  bge-small per language, the default; or with multilingual-e5-small, opt-in),
  :class:`~rag_core.sentence_encoder.SentenceEncoderEmbedding` (USE-m3 alone, no
  fetched models) or :class:`~rag_core.embedding.HashedEmbedding` (no weights) —
  and :class:`~rag_core.answerer.ExtractiveLLM`; offline, cost 0.
* ``openai``: llama-index's ``OpenAI`` and ``OpenAIEmbedding`` against
  ``OPENAI_BASE_URL``. Retries are the OpenAI SDK's own (``max_retries``:
  exponential backoff with jitter on connection errors, 408, 409, 429 and 5xx,
  honouring ``Retry-After``); LlamaIndex's extra tenacity layer is switched off
  so the two do not multiply. Every call has ``RAGWARD_LLM_TIMEOUT_S``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import openai
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms.llm import LLM
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI

from rag_core.answerer import ExtractiveLLM
from rag_core.embedding import HashedEmbedding
from rag_core.fused_encoder import FusedEncoderEmbedding
from rag_core.sentence_encoder import SentenceEncoderEmbedding
from rag_core.usage import UsageTracker, report_embedding_tokens
from ragward.errors import (
    ConfigError,
    RagwardError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

LOCAL_DIM = 8192
UNKNOWN_MODEL_CONTEXT = 8192


class RetryingOpenAI(OpenAI):
    """``OpenAI`` whose retries are the SDK's (Retry-After aware), not tenacity's."""

    sdk_max_retries: int = Field(default=3, ge=0)

    def _get_credential_kwargs(self, is_async: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = super()._get_credential_kwargs(is_async)
        kwargs["max_retries"] = self.sdk_max_retries
        return kwargs

    @property
    def metadata(self) -> LLMMetadata:
        try:
            return super().metadata
        except ValueError:  # a model llama-index does not know (another OpenAI-compatible server)
            return LLMMetadata(
                context_window=UNKNOWN_MODEL_CONTEXT,
                num_output=self.max_tokens or -1,
                is_chat_model=True,
                model_name=self.model,
            )


class ReportingOpenAIEmbedding(OpenAIEmbedding):
    """``OpenAIEmbedding`` that reports the server's token usage and uses SDK retries."""

    sdk_max_retries: int = Field(default=3, ge=0)

    def _get_credential_kwargs(self, is_async: bool = False) -> dict[str, Any]:
        kwargs: dict[str, Any] = super()._get_credential_kwargs(is_async)
        kwargs["max_retries"] = self.sdk_max_retries
        return kwargs

    def _record(self, response: Any) -> list[list[float]]:
        usage = getattr(response, "usage", None)
        if usage is not None and getattr(usage, "total_tokens", None) is not None:
            report_embedding_tokens(int(usage.total_tokens))
        return [list(item.embedding) for item in response.data]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        response = await self._get_aclient().embeddings.create(
            input=[query.replace("\n", " ")], model=self._query_engine, **self.additional_kwargs
        )
        return self._record(response)[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        response = await self._get_aclient().embeddings.create(
            input=[t.replace("\n", " ") for t in texts],
            model=self._text_engine,
            **self.additional_kwargs,
        )
        return self._record(response)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        response = self._get_client().embeddings.create(
            input=[t.replace("\n", " ") for t in texts],
            model=self._text_engine,
            **self.additional_kwargs,
        )
        return self._record(response)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_query_embedding(self, query: str) -> list[float]:
        response = self._get_client().embeddings.create(
            input=[query.replace("\n", " ")], model=self._query_engine, **self.additional_kwargs
        )
        return self._record(response)[0]


@dataclass
class Backend:
    """The models one RagService (or one ingest) works with."""

    name: str
    embed_model: BaseEmbedding
    llm: LLM
    llm_model: str
    embedding_model: str
    tracker: UsageTracker
    timeout_s: float | None = None
    _sync_clients: list[httpx.Client] = field(default_factory=list)
    _async_clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def embedding_id(self) -> str:
        """What an index must have been built with to be queried by this backend."""
        return f"{self.name}:{self.embedding_model}"

    def map_error(self, exc: BaseException) -> RagwardError | None:
        """A provider failure as the domain error the HTTP layer maps to 502/503/504."""
        return map_openai_error(exc)

    def close_sync(self) -> None:
        for client in self._sync_clients:
            client.close()
        self._sync_clients.clear()

    async def aclose(self) -> None:
        self.close_sync()
        for aclient in self._async_clients:
            await aclient.aclose()
        self._async_clients.clear()


def map_openai_error(exc: BaseException) -> RagwardError | None:
    """Never includes the provider's message text: it may echo credentials."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout("the LLM provider did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamUnavailable("the LLM provider is unreachable")
    if isinstance(exc, openai.RateLimitError):
        return UpstreamUnavailable("the LLM provider is rate limiting; retries exhausted")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500:
            return UpstreamError(f"the LLM provider failed (HTTP {exc.status_code})")
        return UpstreamError(f"the LLM provider rejected the request (HTTP {exc.status_code})")
    if isinstance(exc, openai.OpenAIError):
        return UpstreamError("the LLM provider failed")
    return None


LocalEmbedding = Literal["use-m3-bge", "use-m3", "use-m3-e5", "hashed"]


def build_local_backend(
    tracker: UsageTracker | None = None,
    dim: int = LOCAL_DIM,
    embedding: LocalEmbedding = "use-m3-bge",
    model_dir: Path | None = None,
) -> Backend:
    """``dim``: the hashed embedding's buckets and the extractive answerer's (always hashed)."""
    tracker = tracker or UsageTracker()
    embed: BaseEmbedding
    if embedding == "use-m3":
        embed = SentenceEncoderEmbedding(callback_manager=tracker.callback_manager)
    elif embedding == "use-m3-bge":
        embed = FusedEncoderEmbedding(
            "bge", model_dir=model_dir, callback_manager=tracker.callback_manager
        )
    elif embedding == "use-m3-e5":
        embed = FusedEncoderEmbedding("e5", callback_manager=tracker.callback_manager)
    else:
        embed = HashedEmbedding(dim=dim, callback_manager=tracker.callback_manager)
    llm = ExtractiveLLM(dim=dim, callback_manager=tracker.callback_manager)
    return Backend(
        name="local",
        embed_model=embed,
        llm=llm,
        llm_model=llm.model_name,
        embedding_model=embed.model_name,
        tracker=tracker,
    )


@dataclass(frozen=True, slots=True)
class OpenAIConfig:
    """An OpenAI (or OpenAI-compatible) server: key, URL, models, and how long to wait."""

    api_key: str | None = field(repr=False)  # None: only with base_url (a local server)
    base_url: str | None
    model: str
    embedding_model: str
    timeout_s: float
    max_retries: int  # the SDK's own retries (llama-index's layer is off)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Which backend answers: ``local`` (offline, with ``local_embedding``) or ``openai``."""

    llm: Literal["local", "openai"]
    local_embedding: LocalEmbedding
    openai: OpenAIConfig
    model_dir: Path | None = None  # the bge models (None: rag_core.models' default)


def build_openai_backend(config: OpenAIConfig, tracker: UsageTracker | None = None) -> Backend:
    tracker = tracker or UsageTracker()
    if config.api_key is not None:
        api_key = config.api_key
    elif config.base_url:
        api_key = "not-needed"  # many OpenAI-compatible servers take no key
    else:
        raise ConfigError("OPENAI_API_KEY: required when RAGWARD_LLM=openai")
    timeout = httpx.Timeout(config.timeout_s, connect=min(5.0, config.timeout_s))
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    sync_client = httpx.Client(timeout=timeout, limits=limits)
    async_client = httpx.AsyncClient(timeout=timeout, limits=limits)
    common: dict[str, Any] = {
        "api_key": api_key,
        "api_base": config.base_url,
        "timeout": config.timeout_s,
        "max_retries": 0,  # disables llama-index's tenacity layer
        "sdk_max_retries": config.max_retries,
        "callback_manager": tracker.callback_manager,
        "http_client": sync_client,
        "async_http_client": async_client,
    }
    llm = RetryingOpenAI(model=config.model, temperature=0.0, **common)
    embed = ReportingOpenAIEmbedding(
        model_name=config.embedding_model, embed_batch_size=64, **common
    )
    return Backend(
        name="openai",
        embed_model=embed,
        llm=llm,
        llm_model=config.model,
        embedding_model=config.embedding_model,
        tracker=tracker,
        timeout_s=config.timeout_s,
        _sync_clients=[sync_client],
        _async_clients=[async_client],
    )


def build_backend(config: BackendConfig, tracker: UsageTracker | None = None) -> Backend:
    if config.llm == "openai":
        return build_openai_backend(config.openai, tracker)
    return build_local_backend(tracker, embedding=config.local_embedding,
                               model_dir=config.model_dir)
