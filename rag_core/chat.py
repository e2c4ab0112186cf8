"""Conversations: bounded memory, a condensed retrieval question, an answer that streams.

A :class:`ChatRequest` is a whole conversation. Its last turn is the question;
the turns before it are *memory*, kept with LlamaIndex's ``ChatMemoryBuffer``
within ``RAGWARD_CHAT_MEMORY_TOKENS``: the buffer drops the oldest turns first
(and never starts on an assistant turn), so memory is bounded however long the
client's history grows.

Retrieval needs one search text, not a transcript. A follow-up ("and for
contractors?") means little alone, so the question is *condensed* with the user
turns just before it that survived memory, newest first, within
``CONDENSE_TOKENS``. This is lexical, not a rewrite by the LLM: it costs no
extra model call and works the same on the offline ``local`` backend.

The answer streams as :mod:`rag_core.schemas` chat events:

* ``openai`` backend: LlamaIndex's ``astream_chat`` over the retrieved context
  and the memory, asking the upstream for ``stream_options.include_usage`` so
  the usage is the provider's own; without it, the tokens are counted.
* ``local`` backend: the extractive answer (the same synthesizer as
  ``/v1/query``), sent in small pieces of ``PIECE_CHARS``.

Either way ``max_tokens`` bounds the completion (the local answer is cut at a
word boundary and ends with ``finish_reason="length"``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.memory import ChatMemoryBuffer

from rag_core.schemas import ChatTurn
from ragward.errors import ValidationFailed

CONDENSE_TOKENS = 64
PIECE_CHARS = 12

CHAT_SYSTEM_PROMPT = (
    "You answer questions about the company handbook using only the context below.\n"
    "If the context does not contain the answer, say that you do not know.\n"
    "Answer in the language of the question.\n"
    "<context>\n{context}\n</context>"
)


@dataclass(frozen=True, slots=True)
class Conversation:
    question: str
    memory: list[ChatMessage]
    retrieval_query: str


def conversation(
    turns: Sequence[ChatTurn], *, memory_tokens: int, count: Callable[[str], int]
) -> Conversation:
    """Split a conversation into the question, the bounded memory and the search text."""
    if turns[-1].role != "user":
        raise ValidationFailed("messages: the last message must be the user's question",
                               field="messages")
    question = turns[-1].content
    if not question.strip():
        raise ValidationFailed("messages: the question is empty", field="messages")
    history = [ChatMessage(role=MessageRole(t.role), content=t.content) for t in turns[:-1]]
    memory = ChatMemoryBuffer.from_defaults(
        chat_history=history, token_limit=max(memory_tokens, 1),
        tokenizer_fn=lambda text: [0] * count(text),
    ).get() if history and memory_tokens > 0 else []
    context: list[str] = []
    budget = CONDENSE_TOKENS
    for message in reversed(memory):
        if message.role is not MessageRole.USER:
            continue
        text = message.content or ""
        cost = count(text)
        if cost > budget:
            break
        context.insert(0, text)
        budget -= cost
    return Conversation(question, memory, "\n".join([*context, question]))


def chat_messages(conv: Conversation, context: str) -> list[ChatMessage]:
    """What the LLM sees: our instructions with the context, the memory, the question."""
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=CHAT_SYSTEM_PROMPT.format(context=context)),
        *conv.memory,
        ChatMessage(role=MessageRole.USER, content=conv.question),
    ]


def cut_at_stop(text: str, stops: list[str]) -> str:
    """The text before the earliest stop sequence, which is itself left out (OpenAI's
    ``stop``: generation ends where a sequence would begin)."""
    ends = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    return text[: min(ends)] if ends else text


def cut_to_tokens(text: str, max_tokens: int | None, count: Callable[[str], int]) -> str:
    """The longest prefix, ending at a word, that fits ``max_tokens``."""
    if max_tokens is None or count(text) <= max_tokens:
        return text
    words = text.split(" ")
    low, high = 0, len(words)
    while low < high:  # the most words whose join still fits
        middle = (low + high + 1) // 2
        if count(" ".join(words[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    if low == 0:  # no space-separated word fits (e.g. Chinese): cut characters
        chars = text
        while chars and count(chars) > max_tokens:
            chars = chars[: max(0, len(chars) - max(1, len(chars) // 8))]
        return chars
    return " ".join(words[:low])


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def stream_completion(
    stream: AsyncIterator[Any],
) -> AsyncIterator[tuple[str, str | None, dict[str, int] | None]]:
    """(delta text, finish reason, usage) from LlamaIndex chat responses over OpenAI chunks."""
    async for response in stream:
        raw = getattr(response, "raw", None)
        finish = None
        usage = None
        choices = getattr(raw, "choices", None) or []
        if choices:
            finish = getattr(choices[0], "finish_reason", None)
        raw_usage = getattr(raw, "usage", None)
        if raw_usage is not None:
            usage = {"prompt_tokens": int(raw_usage.prompt_tokens or 0),
                     "completion_tokens": int(raw_usage.completion_tokens or 0)}
        yield str(getattr(response, "delta", None) or ""), finish, usage
