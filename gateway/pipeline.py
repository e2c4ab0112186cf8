"""What the gateway does with an authorised question:

    redact → quota → cache → forward → redact

Redaction runs before the quota (docs/architecture.md says why) so
a request blocked for its PII costs no reservation, and the token estimate is
taken on exactly the text that will be forwarded.

The HTTP layer (:mod:`gateway.app`) authenticates and authorises, then hands the
question here and gets back an :class:`~gateway.outcome.Outcome`: the answers,
or the error that refused the request together with what was decided before it.
Nothing here knows about HTTP or about the events the recorder makes of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.cache import AnswerCache, cache_key
from gateway.forward import Caller, Upstream
from gateway.outcome import Outcome
from gateway.pii import RedactionSession, Redactor
from gateway.quota import Admission, QuotaLimiter
from gateway.tokens import count_tokens
from rag_core.schemas import (
    BatchRequest,
    QueryRequest,
    QueryResponse,
    Source,
    Usage,
    check_limits,
)
from ragward import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span

_cached_decoder = msgspec.json.Decoder(QueryResponse)
_encoder = msgspec.json.Encoder()


class QueryPipeline:
    def __init__(
        self,
        upstream: Upstream,
        quota: QuotaLimiter,
        redactor: Redactor,
        cache: AnswerCache | None,
        *,
        answer_allowance_tokens: int,
        max_question_chars: int,
        max_batch: int,
    ) -> None:
        self.upstream = upstream
        self.quota = quota
        self.redactor = redactor
        self.cache = cache
        self.answer_allowance_tokens = self._allowance = answer_allowance_tokens
        self.max_question_chars = self._max_chars = max_question_chars
        self._max_batch = max_batch
        self._after_response: set[asyncio.Task[None]] = set()

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Book-keeping the client need not wait for (settling the token reservation,
        filling the cache) runs after the answer; :meth:`drain` awaits it at shutdown."""
        task = asyncio.create_task(work)
        self._after_response.add(task)
        task.add_done_callback(self._after_response.discard)

    async def drain(self) -> None:
        while self._after_response:
            await asyncio.gather(*self._after_response, return_exceptions=True)

    async def query(self, request: QueryRequest, caller: Caller, *, use_cache: bool) -> Outcome:
        """One question; the outcome has its one answer, or the error that refused it."""
        return await self._answer(request.index, request.top_k, (request.question,), caller,
                                  use_cache=use_cache)

    async def query_batch(
        self, request: BatchRequest, caller: Caller, *, use_cache: bool
    ) -> Outcome:
        """Several questions, answered in the order asked (cached ones from the cache,
        the others in one upstream call)."""
        return await self._answer(request.index, request.top_k, tuple(request.questions),
                                  caller, use_cache=use_cache)

    async def _answer(
        self, index: str, top_k: int, questions: tuple[str, ...], caller: Caller, *,
        use_cache: bool,
    ) -> Outcome:
        redacted: tuple[str, ...] = ()
        counts: Mapping[str, int] = {}
        admission: Admission | None = None
        try:
            check_limits(questions, max_question_chars=self._max_chars,
                         max_batch=self._max_batch)
            session = self.redactor.session()
            with tracing.span("redact") as span:
                # may raise PiiBlocked
                redacted = tuple(session.redact(q).text for q in questions)
                if span is not None:
                    describe_redaction(span, session.counts, redacted)
            counts = dict(session.counts)  # the question's; the answers' are not audited
            estimate = sum(count_tokens(q) for q in redacted) + self._allowance * len(redacted)
            version = self.upstream.index_version(index) or "unversioned"
            keys = [cache_key(caller.tenant, index, version, top_k, q) for q in redacted]
            cache = self.cache if use_cache else None
            # The cache read travels with the quota check (one Redis round trip), so the
            # quota span covers both; the cache span says what the read found.
            with tracing.span("quota", attributes={"ragward.quota.estimate_tokens": estimate}):
                admission, hits = await admit_and_look_up(self.quota, caller.tenant, estimate,
                                                          cache, keys)
            try:
                with tracing.span("cache") as span:
                    if span is not None:
                        span.set_attributes({
                            "ragward.cache.lookups": len(hits) if cache else 0,
                            "ragward.cache.hits": len(hits) - hits.count(None)})
                answers = await self._lookup_or_forward(index, top_k, redacted, keys, hits,
                                                        caller, session)
            except BaseException:
                await asyncio.shield(self.quota.release(admission))
                raise
        except Exception as exc:  # refused or failed: the outcome says how far it got
            return Outcome(index=index, questions=len(questions), questions_redacted=redacted,
                           redactions=counts, admission=admission, error=exc)
        usage = _sum_usage(a.usage for a in answers)
        self.later(self.quota.settle(admission, usage.total_tokens))
        return Outcome(index=index, questions=len(questions), questions_redacted=redacted,
                       redactions=counts, answers=answers, usage=usage, admission=admission,
                       cached=all(a.cached for a in answers))

    async def _lookup_or_forward(
        self,
        index: str,
        top_k: int,
        redacted: tuple[str, ...],
        keys: list[str],
        hits: list[bytes | None],
        caller: Caller,
        session: RedactionSession,
    ) -> tuple[QueryResponse, ...]:
        results: list[QueryResponse | None] = [None] * len(redacted)
        for i, hit in enumerate(hits):
            if hit is not None:
                cached = _cached_decoder.decode(hit)
                results[i] = msgspec.structs.replace(
                    cached, cached=True, request_id=caller.request_id, usage=Usage()
                )
        misses = [i for i, r in enumerate(results) if r is None]
        if misses:
            answers = await self._forward([redacted[i] for i in misses], index, top_k, caller)
            with tracing.span("redact answer"):
                cleaned = [redact_outbound(a, session, caller.request_id) for a in answers]
            for i, clean in zip(misses, cleaned, strict=True):
                results[i] = clean
                if self.cache is not None:
                    self.later(self.cache.set(keys[i], _encoder.encode(clean)))
        return tuple(r for r in results if r is not None)

    async def _forward(
        self, questions: list[str], index: str, top_k: int, caller: Caller
    ) -> list[QueryResponse]:
        if len(questions) == 1:
            single = QueryRequest(question=questions[0], top_k=top_k, index=index)
            return [await self.upstream.query(single, caller)]
        batch = BatchRequest(questions=questions, top_k=top_k, index=index)
        return (await self.upstream.query_batch(batch, caller)).results


def describe_redaction(span: Span, counts: Mapping[str, int], redacted: Sequence[str]) -> None:
    """What the redact span says: counts per entity type, and the redacted text (its
    placeholders, never the raw values) only where RAGWARD_TRACING_REDACTED_TEXT allows."""
    span.set_attributes({f"ragward.redactions.{kind}": n for kind, n in counts.items()})
    if tracing.redacted_text_allowed():
        span.set_attribute("ragward.question.redacted", redacted)


async def admit_and_look_up(
    quota: QuotaLimiter, tenant: str, estimate: int, cache: AnswerCache | None,
    keys: Sequence[str],
) -> tuple[Admission, list[bytes | None]]:
    """The quota check and the cache read of one request, issued in the same turn of
    the event loop, so the shared auto-pipeline sends both in one Redis round trip (a
    tenant's keys share a slot: on a cluster, to one node). Neither knows of the
    other. A refused request raises QuotaExceeded; its cache read is dropped."""
    if cache is None:
        return await quota.admit(tenant, estimate), [None] * len(keys)
    # A task starts on the next turn, after this one queues the quota check: both
    # commands are queued before the auto-pipeline's flush runs.
    lookup = asyncio.ensure_future(cache.get_many(keys))
    try:
        admission = await quota.admit(tenant, estimate)
    except BaseException:
        lookup.cancel()
        raise
    return admission, await lookup


def redact_outbound(
    answer: QueryResponse, session: RedactionSession, request_id: str
) -> QueryResponse:
    """Everything rag_core sent, redacted before it reaches the client or the cache.

    Every string — the answer, each source's id and text, every metadata key and value
    at any depth (titles, header paths, file names, nested lists and objects) — goes
    through the session's redactor; only the request id is the gateway's own. A test
    fills every string field of the shapes with PII, so a field added later cannot
    slip past. Equal strings (metadata keys, a file name on every chunk) are redacted
    once per answer.
    """
    done: dict[str, str] = {}

    def text(value: str) -> str:
        clean = done.get(value)
        if clean is None:
            clean = done[value] = session.redact(value, enforce_block=False).text
        return clean

    def nested(value: Any) -> Any:
        if isinstance(value, str):
            return text(value)
        if isinstance(value, dict):
            return {nested(k): nested(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [nested(v) for v in value]
        return value

    return QueryResponse(
        answer=text(answer.answer),
        sources=[Source(id=text(s.id), text=text(s.text), score=s.score,
                        metadata=nested(s.metadata)) for s in answer.sources],
        usage=answer.usage,
        cached=False,
        request_id=request_id,
    )


def _sum_usage(usages: Iterable[Usage]) -> Usage:
    total = Usage()
    for u in usages:
        total.prompt_tokens += u.prompt_tokens
        total.completion_tokens += u.completion_tokens
        total.embedding_tokens += u.embedding_tokens
        total.total_tokens += u.total_tokens
        total.cost_usd += u.cost_usd
    total.cost_usd = round(total.cost_usd, 8)
    return total
