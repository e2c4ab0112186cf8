"""What the gateway does with an authorised conversation — the query path, streamed:

    redact → quota → cache → forward (streamed) → redact (streamed) → settle, cache

:meth:`ChatPipeline.open` runs everything up to the first upstream event, so a
request that will fail (PII blocked, no budget, unknown index, rag_core down)
fails *before* any status line goes out, with the error the query path gives.
It returns a :class:`ChatAnswer`: the redacted answer as it arrives.

* **Redaction.** Every message is redacted with one session (same value, same
  placeholder across the whole conversation and the answer); sources are
  redacted before the answer, as ``/v1/query`` does, so the numbering matches.
  The answer goes through the session's *stream* redaction: only text that
  later text can no longer change is released (:mod:`gateway.pii.stream`), so
  at every prefix the client holds what redacting the whole answer would give.
* **Budget.** The reservation is the redacted question's tokens, the history's
  up to the memory budget (``RAGWARD_CHAT_MEMORY_TOKENS``), the context
  allowance (``RAGWARD_QUOTA_ANSWER_ALLOWANCE_TOKENS``) and the completion cap
  (``max_tokens``, else ``RAGWARD_CHAT_MAX_TOKENS``); rag_core is asked never to
  produce more than that cap. At the end it is settled with the real usage; an
  answer that stops early (client gone, upstream broke) settles what was
  produced: that prompt estimate plus the completion so far.
* **Cache.** Keyed like a query (tenant, index, version, top_k) on the whole
  redacted conversation and the cap. Only a completed answer is stored, redacted.

The upstream is read by one pump task per answer (a LlamaIndex stream keeps
per-request state in context variables, so it must stay on one task), which
hands redacted pieces to the consumer through a small queue; the consumer waits
with a timeout so the HTTP layer can send keep-alives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

import msgspec

from gateway.cache import AnswerCache, cache_key
from gateway.forward import Caller
from gateway.outcome import Outcome
from gateway.pii import RedactionSession
from gateway.pipeline import QueryPipeline, admit_and_look_up, describe_redaction
from gateway.quota import Admission
from gateway.tokens import count_tokens
from rag_core.schemas import (
    ChatEvent,
    ChatRequest,
    ChatTurn,
    DeltaEvent,
    EndEvent,
    ErrorEvent,
    Source,
    SourcesEvent,
    Usage,
)
from ragward import tracing
from ragward.errors import (
    DependencyUnavailable,
    NotFound,
    RagwardError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)

CACHED_PIECE_CHARS = 24


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: str
    usage: Usage


Piece = Text | Finished


@dataclass(frozen=True, slots=True)
class _Ask:
    """What one conversation asks of rag_core, the quota and the cache."""

    forwarded: ChatRequest  # redacted, with its completion cap
    prompt_tokens: int  # the question and the history rag_core will keep
    estimate: int  # the reservation: prompt, context allowance and completion cap
    key: str  # the answer cache's


class CachedChat(msgspec.Struct):
    answer: str
    sources: list[Source]
    finish_reason: str


_cached_decoder = msgspec.json.Decoder(CachedChat)
_encoder = msgspec.json.Encoder()


def upstream_error(event: ErrorEvent) -> RagwardError:
    """rag_core's error event as the domain error the HTTP layer maps (never its trace)."""
    if event.code == "dependency_unavailable":  # an index's store is down: as for a query
        return DependencyUnavailable()
    by_status: dict[int, type[RagwardError]] = {
        404: NotFound, 422: ValidationFailed, 503: UpstreamUnavailable, 504: UpstreamTimeout,
    }
    return by_status.get(event.status, UpstreamError)(event.message[:300])


class ChatAnswer:
    """One conversation's redacted answer, as it arrives. Close it exactly once."""

    def __init__(
        self,
        *,
        sources: list[Source],
        cached: bool,
        prompt_tokens: int,
        settle: _Settlement,
        session: RedactionSession,
    ) -> None:
        self.sources = sources
        self.cached = cached
        self.prompt_tokens = prompt_tokens
        self._session = session
        self.produced = ""  # redacted text handed out so far
        self.upstream_parts: list[str] = []  # what the LLM produced so far (for the bill)
        self.finished: Finished | None = None
        self.opened_at = time.perf_counter()
        self.first_text_at: float | None = None
        self._settlement = settle
        self._queue: asyncio.Queue[Piece | BaseException] = asyncio.Queue(maxsize=64)
        self._pump: asyncio.Task[None] | None = None

    def _start(self, work: AsyncGenerator[Piece, None]) -> None:
        async def pump() -> None:
            try:
                async for piece in work:
                    await self._queue.put(piece)
            except Exception as exc:  # handed to the consumer, which decides what it shows
                await self._queue.put(exc)
            finally:
                await work.aclose()

        self._pump = asyncio.create_task(pump(), name="chat-pump")

    async def next(self, wait_s: float | None = None) -> Piece | None:
        """The next piece; None when nothing arrived within ``wait_s`` (keep-alive time)."""
        try:
            item = await asyncio.wait_for(self._queue.get(), wait_s)
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Text):
            if self.first_text_at is None and item.text:
                self.first_text_at = time.perf_counter()
            self.produced += item.text
        else:
            self.finished = item
        return item

    async def collect(self) -> str:
        """The whole answer (non-streamed requests)."""
        while self.finished is None:
            await self.next()
        return self.produced

    @property
    def redactions(self) -> dict[str, int]:
        """PII replaced in the whole request so far: messages, sources and answer."""
        return dict(self._session.counts)

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_text_at is None else self.first_text_at - self.opened_at

    async def close(self) -> Usage:
        """Stop the upstream (if still running) and settle; returns the usage charged.

        After ``finished`` that is the real usage; before it, what was produced."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self.finished is not None:
            return self.finished.usage
        # The LLM was paid for what it produced, sent on or still held back.
        produced = count_tokens("".join(self.upstream_parts))
        partial = Usage(prompt_tokens=self.prompt_tokens, completion_tokens=produced,
                        total_tokens=self.prompt_tokens + produced)
        await self._settlement.settle(0 if self.cached else partial.total_tokens)
        return partial if not self.cached else Usage()


@dataclass
class _Settlement:
    """The reservation of one answer, settled exactly once."""

    pipeline: QueryPipeline
    admission: Admission

    async def settle(self, tokens: int) -> None:
        await asyncio.shield(self.pipeline.quota.settle(self.admission, tokens))


class ChatPipeline:
    """The query path for conversations; shares the query pipeline's collaborators."""

    def __init__(
        self, pipeline: QueryPipeline, *, default_max_tokens: int, memory_tokens: int
    ) -> None:
        self._pipeline = pipeline
        self._default_max_tokens = default_max_tokens
        self._memory_tokens = memory_tokens

    async def open(
        self, request: ChatRequest, caller: Caller, *, use_cache: bool
    ) -> tuple[Outcome, ChatAnswer | None]:
        """The opening outcome and the answer; no answer when the outcome is a refusal."""
        p = self._pipeline
        redacted: tuple[str, ...] = ()
        counts: Mapping[str, int] = {}
        admission: Admission | None = None
        try:
            question = request.messages[-1].content
            if len(question) > p.max_question_chars:
                raise ValidationFailed(
                    f"messages: the question is longer than {p.max_question_chars} characters",
                    field="messages",
                )
            session = p.redactor.session()
            with tracing.span("redact") as span:
                turns = [ChatTurn(role=t.role, content=session.redact(t.content).text)
                         for t in request.messages]  # may raise PiiBlocked
                if span is not None:
                    describe_redaction(span, session.counts, [turns[-1].content])
            redacted, counts = (turns[-1].content,), dict(session.counts)
            ask = self._ask(request, turns, caller)
            cache = p.cache if use_cache else None
            # The cache read travels with the quota check (one Redis round trip), so the
            # quota span covers both; the cache span says what the read found.
            with tracing.span("quota",
                              attributes={"ragward.quota.estimate_tokens": ask.estimate}):
                admission, hits = await admit_and_look_up(p.quota, caller.tenant, ask.estimate,
                                                          cache, [ask.key])
            answer = await self._answer(ask, admission, hits[0], cache is not None, caller,
                                        session)
        except Exception as exc:  # refused or failed: the outcome says how far it got
            return Outcome(index=request.index, questions=1, questions_redacted=redacted,
                           redactions=counts, admission=admission, error=exc), None
        return Outcome(index=request.index, questions=1, questions_redacted=redacted,
                       redactions=counts, admission=admission, cached=answer.cached), answer

    def _ask(self, request: ChatRequest, turns: list[ChatTurn], caller: Caller) -> _Ask:
        max_tokens = request.max_tokens or self._default_max_tokens
        # rag_core keeps at most RAGWARD_CHAT_MEMORY_TOKENS of the history: a long one
        # must not reserve (and be refused for) tokens that will never be sent.
        history = sum(count_tokens(t.content) for t in turns[:-1])
        prompt_tokens = count_tokens(turns[-1].content) + min(history, self._memory_tokens)
        version = self._pipeline.upstream.index_version(request.index) or "unversioned"
        # Everything that shapes the answer is in the key: a hit must be the answer this
        # request would have got (another stop sequence or sampling is another answer).
        conversation = "\x1e".join(f"{t.role}:{t.content}" for t in turns)
        shaping = _encoder.encode([max_tokens, request.stop, request.temperature,
                                   request.top_p]).decode()
        return _Ask(
            forwarded=msgspec.structs.replace(request, messages=turns, max_tokens=max_tokens),
            prompt_tokens=prompt_tokens,
            estimate=prompt_tokens + self._pipeline.answer_allowance_tokens + max_tokens,
            key=cache_key(caller.tenant, request.index, version, request.top_k,
                          f"{conversation}\x1e{shaping}"),
        )

    async def _answer(
        self, ask: _Ask, admission: Admission, cached: bytes | None, looked_up: bool,
        caller: Caller, session: RedactionSession,
    ) -> ChatAnswer:
        """The answer from the cache, or rag_core's stream once it has sent its sources;
        the reservation is released when neither comes."""
        p = self._pipeline
        settlement = _Settlement(p, admission)
        try:
            with tracing.span("cache") as span:
                hit = _cached(cached)
                if span is not None:
                    span.set_attributes({"ragward.cache.lookups": int(looked_up),
                                         "ragward.cache.hits": int(hit is not None)})
            if hit is not None:
                await p.quota.settle(admission, 0)
                answer = ChatAnswer(sources=hit.sources, cached=True,
                                    prompt_tokens=ask.prompt_tokens, settle=settlement,
                                    session=session)
                answer._start(_replay(hit))
                return answer
            opened = await p.upstream.open_chat(ask.forwarded, caller)
            events = opened.events
            try:
                first = await anext(events)
            except StopAsyncIteration:
                raise UpstreamError("rag_core ended the stream before answering") from None
            except BaseException:
                await events.aclose()
                raise
            if isinstance(first, ErrorEvent):
                await events.aclose()
                raise upstream_error(first)
            if not isinstance(first, SourcesEvent):
                await events.aclose()
                raise UpstreamError("rag_core's stream did not start with its sources")
        except BaseException:
            await asyncio.shield(p.quota.release(admission))
            raise
        sources = [Source(id=s.id, text=session.redact(s.text, enforce_block=False).text,
                          score=s.score, metadata=s.metadata) for s in first.sources]
        answer = ChatAnswer(sources=sources, cached=False, prompt_tokens=ask.prompt_tokens,
                            settle=settlement, session=session)
        answer._start(self._redacted(events, session, answer, p.cache, ask.key))
        return answer

    async def _redacted(
        self,
        events: AsyncGenerator[ChatEvent, None],
        session: RedactionSession,
        answer: ChatAnswer,
        cache: AnswerCache | None,
        key: str,
    ) -> AsyncGenerator[Piece, None]:
        redaction = session.stream()
        sent: list[str] = []
        try:
            async for event in events:
                if isinstance(event, DeltaEvent):
                    answer.upstream_parts.append(event.text)
                    safe = redaction.push(event.text)
                    if safe:
                        sent.append(safe)
                        yield Text(safe)
                elif isinstance(event, EndEvent):
                    tail = redaction.close()
                    if tail:
                        sent.append(tail)
                        yield Text(tail)
                    # Settled before the client hears "finished": a next request of the
                    # same tenant sees this one's real usage.
                    await answer._settlement.settle(event.usage.total_tokens)
                    if cache is not None:
                        value = CachedChat("".join(sent), answer.sources, event.finish_reason)
                        self._pipeline.later(cache.set(key, _encoder.encode(value)))
                    yield Finished(event.finish_reason, event.usage)
                    return
                elif isinstance(event, ErrorEvent):
                    raise upstream_error(event)
            raise UpstreamError("rag_core's stream ended without its end event")
        finally:
            await events.aclose()


def _cached(raw: bytes | None) -> CachedChat | None:
    if raw is None:
        return None
    try:
        return _cached_decoder.decode(raw)
    except msgspec.DecodeError:  # an entry of another shape: a miss, refilled later
        return None


async def _replay(hit: CachedChat) -> AsyncGenerator[Piece, None]:
    for i in range(0, len(hit.answer), CACHED_PIECE_CHARS):
        yield Text(hit.answer[i : i + CACHED_PIECE_CHARS])
    yield Finished(hit.finish_reason, Usage())
