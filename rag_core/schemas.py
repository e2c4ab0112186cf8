"""The query API's wire shapes (docs/api.md), shared by rag_core and the gateway.

The gateway speaks the same shape to clients that rag_core speaks to it, so it
can front any RAG service that answers ``POST /v1/query`` like this. How long a
question and how large a batch may be is configuration (``RAGWARD_MAX_QUESTION_CHARS``,
``RAGWARD_MAX_BATCH``), so the shapes carry no such cap: :func:`check_limits`
applies the configured ones, in the gateway and in rag_core alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from ragward.errors import ValidationFailed

Question = Annotated[str, msgspec.Meta(min_length=1)]
TopK = Annotated[int, msgspec.Meta(ge=1, le=20)]
IndexName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True):
    question: Question
    top_k: TopK = 3
    index: IndexName = "default"


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    questions: Annotated[list[Question], msgspec.Meta(min_length=1)]
    top_k: TopK = 3
    index: IndexName = "default"


def check_limits(questions: Sequence[str], *, max_question_chars: int, max_batch: int) -> None:
    """422 naming the field when a batch or one of its questions is over its limit."""
    if len(questions) > max_batch:
        raise ValidationFailed(f"questions: at most {max_batch}", field="questions")
    for position, question in enumerate(questions):
        if len(question) > max_question_chars:
            name = "question" if len(questions) == 1 else f"questions[{position}]"
            raise ValidationFailed(
                f"{name}: longer than {max_question_chars} characters", field=name
            )


class Source(msgspec.Struct):
    id: str
    text: str
    score: float | None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0


class QueryResponse(msgspec.Struct):
    answer: str
    sources: list[Source]
    usage: Usage
    cached: bool = False
    request_id: str = ""


class BatchResponse(msgspec.Struct):
    results: list[QueryResponse]


class IndexInfo(msgspec.Struct):
    """One index a tenant may use (``GET /v1/indexes``): ``owner`` is the owning tenant,
    None for a ``shared`` one (rag_core.ownership)."""

    name: str
    version: str
    owner: str | None = None
    shared: bool = True
    documents: int = 0
    chunks: int = 0
    model: str = ""


class IndexList(msgspec.Struct):
    indexes: list[IndexInfo]


# --------------------------------------------------------------------- chat (streamed)
#
# The gateway's /v1/chat/completions reaches rag_core as ``POST /v1/chat/stream``:
# a ChatRequest in, NDJSON out — one ChatEvent per line, in this order:
# ``sources`` (once), ``delta`` (zero or more), ``end`` (once, with the usage).
# A stream that stops without ``end`` failed; an ``error`` line says why.

Role = Annotated[str, msgspec.Meta(pattern=r"^(system|user|assistant)$")]


class ChatTurn(msgspec.Struct, forbid_unknown_fields=True):
    role: Role
    content: Annotated[str, msgspec.Meta(max_length=64_000)]


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    """One conversation: the last turn is the user's question, the rest memory."""

    messages: Annotated[list[ChatTurn], msgspec.Meta(min_length=1, max_length=2048)]
    index: IndexName = "default"
    top_k: TopK = 3
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stop: list[str] = msgspec.field(default_factory=list)


class SourcesEvent(msgspec.Struct, tag_field="type", tag="sources"):
    sources: list[Source]


class DeltaEvent(msgspec.Struct, tag_field="type", tag="delta"):
    text: str


FinishReason = str  # "stop" | "length"


class EndEvent(msgspec.Struct, tag_field="type", tag="end"):
    finish_reason: FinishReason
    usage: Usage


class ErrorEvent(msgspec.Struct, tag_field="type", tag="error"):
    code: str
    message: str
    status: int = 502


ChatEvent = SourcesEvent | DeltaEvent | EndEvent | ErrorEvent
