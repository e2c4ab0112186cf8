"""Streamed answers for chats: the offline extract in small pieces, the LLM's as it comes.

Both yield :mod:`rag_core.schemas` chat events (deltas, then one end event with the
usage); :class:`~rag_core.service.RagService` adds retrieval, sources, the embedding
tokens and the cost around them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from rag_core.backends import Backend
from rag_core.chat import (
    Conversation,
    chat_messages,
    cut_at_stop,
    cut_to_tokens,
    pieces,
    stream_completion,
)
from rag_core.schemas import ChatEvent, ChatRequest, DeltaEvent, EndEvent, Usage
from rag_core.synthesizer import SinglePassSynthesizer
from ragward import tracing


async def extractive_answer(
    synthesizer: SinglePassSynthesizer, count: Callable[[str], int], timeout_s: float,
    question: str, chunks: list[str], req: ChatRequest,
) -> AsyncIterator[ChatEvent]:
    """The extractive answer, in small pieces (memory cannot change an extract).

    ``stop`` applies as with an LLM; ``temperature`` and ``top_p`` do not: an
    extract involves no sampling."""
    async with asyncio.timeout(timeout_s):
        full = cut_at_stop(str(await synthesizer.aget_response(question, chunks)), req.stop)
    text = cut_to_tokens(full, req.max_tokens, count)
    for piece in pieces(text):
        yield DeltaEvent(text=piece)
        await asyncio.sleep(0)  # a real yield point: a client that left cancels here
    yield EndEvent(finish_reason="stop" if text == full else "length",
                   usage=Usage(completion_tokens=count(text)))


async def llm_answer(
    backend: Backend, conv: Conversation, chunks: list[str], req: ChatRequest
) -> AsyncIterator[ChatEvent]:
    """The LLM's answer as it streams (asking for the usage chunk), with the GenAI span."""
    options: dict[str, Any] = {"stream_options": {"include_usage": True}}
    for name in ("max_tokens", "temperature", "top_p"):
        value = getattr(req, name)
        if value is not None:
            options[name] = value
    if req.stop:
        options["stop"] = req.stop
    messages = chat_messages(conv, "\n\n".join(chunks))
    span = tracing.llm_stream(backend.name, backend.llm_model)
    opened = time.perf_counter()
    try:
        stream = await backend.llm.astream_chat(messages, **options)
        produced: list[str] = []
        finish: str | None = None
        usage: dict[str, int] | None = None
        async for delta, finished, reported in stream_completion(stream):
            if delta:
                if span is not None and not produced:
                    span.set_attribute("gen_ai.response.time_to_first_chunk",
                                       time.perf_counter() - opened)
                produced.append(delta)
                yield DeltaEvent(text=delta)
            finish = finished or finish
            usage = reported or usage
        count = backend.tracker.count
        if usage is None:  # the upstream ignored include_usage: count ourselves
            usage = {"prompt_tokens": sum(count(m.content or "") for m in messages),
                     "completion_tokens": count("".join(produced))}
        if span is not None:
            span.set_attributes({"gen_ai.usage.input_tokens": usage["prompt_tokens"],
                                 "gen_ai.usage.output_tokens": usage["completion_tokens"],
                                 "gen_ai.response.finish_reasons": [finish or "stop"]})
    except Exception as exc:
        if span is not None:
            tracing.mark_failed(span, type(exc))
        raise
    finally:
        if span is not None:
            span.end()
    yield EndEvent(finish_reason=finish or "stop",
                   usage=Usage(prompt_tokens=usage["prompt_tokens"],
                               completion_tokens=usage["completion_tokens"]))
