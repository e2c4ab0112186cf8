"""OpenAI Chat Completions on the wire: what a client may send, what it gets back.

:func:`parse_chat_request` turns a decoded JSON body into a
:class:`ChatCompletionRequest` or raises :class:`~ragward.errors.ValidationFailed`
naming the parameter (the OpenAI routes answer it as a 400 in OpenAI's shape).
What is not supported is refused, never silently ignored when it would change
the answer: ``n`` > 1, tools and functions, audio, image/file parts, a
``response_format`` other than text, log-probabilities, predicted outputs.
Parameters that cannot change a retrieval-grounded answer's meaning
(penalties, ``seed``, ``metadata``, ``store``, ``service_tier``…) are accepted
and ignored, as OpenAI-compatible servers usually do. Anything else is an
unrecognised parameter (400), as OpenAI itself answers.

The model id is the index name; ``ragward/<index>`` names the same index.
Sources travel in the top-level extension field ``citations``
(see :func:`citation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from rag_core.schemas import ChatTurn, Source, Usage
from ragward.errors import ValidationFailed

MODEL_PREFIX = "ragward/"
SNIPPET_CHARS = 500
MAX_STOP = 4
MAX_MESSAGES = 2048  # rag_core.schemas.ChatRequest takes as many; memory bounds what is used

_IGNORED = frozenset({
    "frequency_penalty", "presence_penalty", "seed", "metadata", "store", "service_tier",
    "parallel_tool_calls", "user", "prompt_cache_key", "safety_identifier",
})
_REFUSED = {  # param -> the value that is harmless (None: any value is refused)
    "tools": [], "tool_choice": "none", "functions": [], "function_call": "none",
    "audio": None, "logprobs": False, "top_logprobs": 0, "logit_bias": {},
    "prediction": None, "web_search_options": None, "reasoning_effort": None,
    "modalities": ["text"], "response_format": {"type": "text"},
}
_KNOWN = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "stop", "n", "top_k",
}) | _IGNORED | frozenset(_REFUSED)
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True, slots=True)
class ChatCompletionRequest:
    model: str
    index: str
    messages: list[ChatTurn]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    top_k: int = 3  # extension: chunks retrieved (1..20)


def _invalid(param: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{param}: {message}", field=param)


def index_of_model(model: Any) -> str:
    """The index a model id names (``name`` or ``ragward/name``)."""
    if not isinstance(model, str) or not model:
        raise _invalid("model", "must be a non-empty string naming a model (an index)")
    return model.removeprefix(MODEL_PREFIX)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _invalid(name, f"must be a number between {low:g} and {high:g}")
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(name, f"must be an integer between {low} and {high}")
    return value


def _content(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        if message.get("tool_calls") or message.get("function_call"):
            raise _invalid(f"{where}.tool_calls", "tool calls are not supported")
        raise _invalid(f"{where}.content", "is required")
    if not isinstance(content, list):
        raise _invalid(f"{where}.content", "must be a string or a list of text parts")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise _invalid(f"{where}.content[{j}].type",
                           f"only text parts are supported, not {kind!r}")
        text = part.get("text")
        if not isinstance(text, str):
            raise _invalid(f"{where}.content[{j}].text", "must be a string")
        texts.append(text)
    return "".join(texts)


def _messages(raw: Any) -> list[ChatTurn]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages", "must be a non-empty list of messages")
    if len(raw) > MAX_MESSAGES:
        raise _invalid("messages", f"at most {MAX_MESSAGES} messages")
    turns = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid(where, "must be an object")
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise _invalid(f"{where}.role", f"{message.get('role')!r} is not supported; use "
                           "system, developer, user or assistant")
        turns.append(ChatTurn(role=role, content=_content(message, where)))
    if turns[-1].role != "user":
        raise _invalid("messages", "the last message must be the user's question")
    if not turns[-1].content.strip():
        raise _invalid(f"messages[{len(turns) - 1}].content", "the question is empty")
    return turns


def parse_chat_request(body: Any) -> ChatCompletionRequest:
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    for name in body:
        if name not in _KNOWN:
            raise _invalid(name, "unrecognized request argument")
    for name, harmless in _REFUSED.items():
        if name in body and body[name] is not None and body[name] != harmless:
            raise _invalid(name, "is not supported by this server")
    n = _integer(body, "n", 1, 128)
    if n not in (None, 1):
        raise _invalid("n", "only n=1 is supported")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise _invalid("stream", "must be a boolean")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _invalid("stream_options", "only allowed when stream is true")
        if not isinstance(options, dict) or set(options) - {"include_usage",
                                                             "include_obfuscation"}:
            raise _invalid("stream_options", "only include_usage is supported")
        include_usage = bool(options.get("include_usage", False))
    max_tokens = _integer(body, "max_completion_tokens", 1, 1_000_000)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 1_000_000)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if (not isinstance(stops, list) or len(stops) > MAX_STOP
            or not all(isinstance(s, str) and s for s in stops)):
        raise _invalid("stop", f"must be a string or a list of up to {MAX_STOP} strings")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid("user", "must be a string")
    top_k = _integer(body, "top_k", 1, 20)
    temperature = _number(body, "temperature", 0, 2)
    top_p = _number(body, "top_p", 0, 1)
    model = body.get("model")
    return ChatCompletionRequest(
        model=str(model), index=index_of_model(model), messages=_messages(body.get("messages")),
        stream=stream, include_usage=include_usage, max_tokens=max_tokens,
        temperature=temperature, top_p=top_p, stop=stops, top_k=top_k or 3,
    )


# --------------------------------------------------------------------- answers


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(msgspec.Struct):
    """Every error of the OpenAI routes (OpenAI's shape, plus the request id)."""

    error: OpenAIErrorDetail
    request_id: str



def citation(source: Source) -> dict[str, Any]:
    """One source, as the ``citations`` extension field lists it (already redacted)."""
    meta = source.metadata
    return {
        "id": source.id,
        "title": str(meta.get("title") or meta.get("file_name") or source.id),
        "score": source.score,
        "snippet": source.text[:SNIPPET_CHARS],
        "metadata": meta,
    }


def usage_object(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage; ``total_tokens`` is what the budget charged (embeddings included)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "embedding_tokens": usage.embedding_tokens,
    }


def completion_object(
    *, completion_id: str, created: int, model: str, text: str, finish_reason: str,
    usage: Usage, sources: list[Source],
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "finish_reason": finish_reason,
            "logprobs": None,
        }],
        "usage": usage_object(usage),
        "system_fingerprint": None,
        "citations": [citation(s) for s in sources],
    }


def chunk_object(
    *, completion_id: str, created: int, model: str, delta: dict[str, Any] | None,
    finish_reason: str | None = None, usage: Usage | None = None,
    sources: list[Source] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` makes the usage chunk (``choices: []``)."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [] if delta is None else [
            {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        ],
    }
    if usage is not None:
        chunk["usage"] = usage_object(usage)
    if sources is not None:
        chunk["citations"] = [citation(s) for s in sources]
    return chunk


def model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "ragward"}
