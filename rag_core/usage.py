"""Per-request token counting with LlamaIndex's ``TokenCountingHandler``.

The LLM and the embedding model are long-lived and shared by concurrent
requests, so their ``CallbackManager`` cannot hold a counter. It holds one
:class:`RequestRouter` instead, which forwards each callback event to the
``TokenCountingHandler`` of the request that caused it, found through a
context variable. asyncio copies context variables into every task, so two
concurrent requests never see each other's counts, and nothing global counts.

Embedding backends that learn the real token count from the server (OpenAI's
``usage``) report it with :func:`report_embedding_tokens`; that number wins
over the local tokenizer's estimate.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType
from llama_index.core.utils import get_tokenizer


@dataclass
class RequestUsage:
    """The token counts of one request."""

    counter: TokenCountingHandler
    reported_embedding_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt_tokens(self) -> int:
        return self.counter.prompt_llm_token_count

    @property
    def completion_tokens(self) -> int:
        return self.counter.completion_llm_token_count

    @property
    def embedding_tokens(self) -> int:
        if self.reported_embedding_tokens is not None:
            return self.reported_embedding_tokens
        return self.counter.total_embedding_token_count


_current: contextvars.ContextVar[RequestUsage | None] = contextvars.ContextVar(
    "ragward_request_usage", default=None
)


def current_usage() -> RequestUsage | None:
    """The counts of the request being tracked in this task (None outside one)."""
    return _current.get()


def report_embedding_tokens(tokens: int) -> None:
    """Add server-reported embedding tokens to the current request (no-op outside one)."""
    usage = _current.get()
    if usage is not None:
        usage.reported_embedding_tokens = (usage.reported_embedding_tokens or 0) + tokens


class RequestRouter(BaseCallbackHandler):
    """Forwards LLM and embedding events to the current request's counter."""

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        usage = _current.get()
        if usage is not None and event_type in (CBEventType.LLM, CBEventType.EMBEDDING):
            usage.counter.on_event_end(event_type, payload, event_id=event_id, **kwargs)

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(
        self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None
    ) -> None:
        return None


class UsageTracker:
    """Owns the shared callback manager and hands out one counter per request."""

    def __init__(self, tokenizer: Callable[[str], list[Any]] | None = None) -> None:
        self.tokenizer = tokenizer or get_tokenizer()
        self.callback_manager = CallbackManager([RequestRouter()])

    @contextmanager
    def track(self) -> Iterator[RequestUsage]:
        """Count the tokens of everything run inside this block (in this task)."""
        usage = RequestUsage(counter=TokenCountingHandler(tokenizer=self.tokenizer))
        token = _current.set(usage)
        try:
            yield usage
        finally:
            _current.reset(token)

    def count(self, text: str) -> int:
        return len(self.tokenizer(text))
