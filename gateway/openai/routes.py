"""The OpenAI-compatible routes (docs/openai.md): chat completions, streamed or not, and models.

Authentication, authorisation, quota, redaction, cache and audit are the
gateway's usual ones (the same authentication hook and :class:`~gateway.chat.ChatPipeline`
over the query pipeline's collaborators); only the wire shapes differ. Errors
come out in OpenAI's shape (the handlers' ``opt`` asks
:mod:`ragward.http_errors` for it).

A stream's guarantees, in the order they happen:

1. everything that can refuse the request (token, role, model, PII blocked,
   budget, rag_core down) runs before the status line, so it is a normal error;
2. the status line goes out only once the request's opening audit event is
   durable (the recorder, as for any answer);
3. chunks: the role, then ``delta.content`` pieces as the stream redaction
   releases them, then the chunk with ``finish_reason`` and ``citations``, then
   — only with ``stream_options.include_usage`` — the usage chunk (``choices: []``);
   ``: keep-alive`` comments whenever nothing went out for ``RAGWARD_CHAT_KEEPALIVE_S``;
4. the closing audit event (outcome, usage, redactions, finish reason, time to
   first token, duration) is made durable, and only then ``data: [DONE]``; if it
   cannot be, the stream ends with an error event instead;
5. a client that leaves cancels the upstream, and the request is still settled
   and recorded (``outcome="disconnected"`` with the usage produced so far).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response import Stream

from gateway.auth import Principal
from gateway.chat import ChatAnswer, Finished, Text
from gateway.components import Components
from gateway.handlers import (
    authenticated,
    caller_of,
    components_of,
    concluded,
    principal_of,
    rate_headers,
    refuse,
    use_cache,
)
from gateway.openai.wire import (
    ChatCompletionRequest,
    OpenAIErrorBody,
    chunk_object,
    completion_object,
    model_object,
    parse_chat_request,
)
from gateway.outcome import Outcome
from gateway.recorder import AUDIT_ACTION, finisher_of, report
from rag_core.schemas import ChatRequest, Usage
from ragward.errors import DependencyUnavailable, Forbidden, NotFound, RagwardError
from ragward.http_errors import OPENAI_SHAPE
from telemetry.events import ChatSummary

log = structlog.get_logger("ragward.gateway.openai")

_OPENAI = {OPENAI_SHAPE: True}
_INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_encode = msgspec.json.Encoder().encode
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {s: ResponseSpec(data_container=OpenAIErrorBody, description="OpenAI-shaped error",
                            generate_examples=False) for s in statuses}


_CHAT_ERRORS = _errors(400, 401, 403, 404, 413, 429, 502, 503, 504)
_MODEL_ERRORS = _errors(401, 404, 502, 503, 504)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def _no_such_model(model: str) -> NotFound:
    return NotFound(f"The model '{model}' does not exist or you do not have access to it.")


def _may_use(gw: Components, principal: Principal, index: str) -> bool:
    try:
        gw.policy.require(principal, "query", index)
    except Forbidden:
        return False
    return True


def _principal_for_model(request: Request[Any, Any, Any], model: str, index: str) -> Principal:
    """The caller, allowed to query ``index``; a model it may not see does not exist."""
    principal = principal_of(request)
    gw = components_of(request.app.state)
    gw.policy.require(principal, "query")  # 403: the role cannot query at all
    if not _INDEX_NAME.match(index) or not _may_use(gw, principal, index):
        raise _no_such_model(model)
    return principal


@post("/v1/chat/completions", status_code=200, before_request=authenticated,
      opt={**_OPENAI, AUDIT_ACTION: "chat.completions"}, responses=_CHAT_ERRORS,
      summary="OpenAI Chat Completions over an index (streamed with stream=true)")
async def chat_completions(
    request: Request[Any, Any, Any], data: JSONBody[dict[str, Any]]
) -> Response[Any]:
    started = time.perf_counter()
    chat = parse_chat_request(data)
    report(request.scope, Outcome(index=chat.index))  # a refusal below names the model's index
    principal = _principal_for_model(request, chat.model, chat.index)
    gw = components_of(request.app.state)
    forwarded = ChatRequest(
        messages=chat.messages, index=chat.index, top_k=chat.top_k, max_tokens=chat.max_tokens,
        temperature=chat.temperature, top_p=chat.top_p, stop=chat.stop,
    )
    opening, answer = await gw.chat.open(forwarded, caller_of(request, principal),
                                         use_cache=use_cache(request, principal))
    if answer is None:
        if isinstance(opening.error, NotFound):
            opening = replace(opening, error=_no_such_model(chat.model))
        refuse(request, opening)
    request_id = caller_of(request, principal).request_id
    ids = {"completion_id": f"chatcmpl-{request_id}", "created": int(time.time()),
           "model": chat.model}
    if not chat.stream:
        # Reported now, so a failure while collecting is recorded with what was decided.
        return await _complete(request, answer, concluded(request, opening), ids, started)
    opening = concluded(request, replace(
        opening, chat=ChatSummary(streamed=True, phase="start", outcome="open")))
    stream = _StreamedAnswer(gw, answer, chat, opening, finisher_of(request.scope), ids,
                             started, request_id)
    return Stream(stream.events(), media_type="text/event-stream",
                  headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                           **rate_headers(opening)})


async def _complete(
    request: Request[Any, Any, Any], answer: ChatAnswer, opening: Outcome, ids: dict[str, Any],
    started: float,
) -> Response[Any]:
    try:
        text = await answer.collect()
    finally:
        usage = await answer.close()
    assert answer.finished is not None
    outcome = concluded(request, replace(
        opening, usage=usage, redactions=answer.redactions,
        chat=_summary(answer, usage, started, streamed=False, outcome="completed")))
    return Response(completion_object(
        **ids, text=text, finish_reason=answer.finished.finish_reason, usage=usage,
        sources=answer.sources,
    ), headers=rate_headers(outcome))


def _summary(
    answer: ChatAnswer, usage: Usage, started: float, *, streamed: bool, outcome: Any
) -> ChatSummary:
    first = answer.first_text_at
    return ChatSummary(
        streamed=streamed, phase="end", outcome=outcome,
        finish_reason=answer.finished.finish_reason if answer.finished else None,
        ttft_ms=round((first - started) * 1000, 3) if first is not None else None,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


class _StreamedAnswer:
    """The SSE body of one streamed answer, and its closing book-keeping."""

    def __init__(
        self,
        gw: Components,
        answer: ChatAnswer,
        chat: ChatCompletionRequest,
        opening: Outcome,
        finish: Callable[[Outcome], Awaitable[None]],
        ids: dict[str, Any],
        started: float,
        request_id: str,
    ) -> None:
        self._gw, self._answer, self._chat, self._opening = gw, answer, chat, opening
        self._finish, self._ids, self._started = finish, ids, started
        self._request_id = request_id

    async def events(self) -> AsyncIterator[bytes]:
        answer, ids = self._answer, self._ids
        keepalive = self._gw.settings.chat_keepalive_s
        failure: RagwardError | None = None
        try:
            yield _sse(chunk_object(**ids, delta={"role": "assistant", "content": ""}))
            try:
                while True:
                    piece = await answer.next(keepalive)
                    if piece is None:
                        yield KEEPALIVE
                    elif isinstance(piece, Text):
                        yield _sse(chunk_object(**ids, delta={"content": piece.text}))
                    elif isinstance(piece, Finished):
                        break
            except RagwardError as exc:  # the upstream failed mid-stream
                failure = exc
            except Exception as exc:  # a defect: say so in the log, not to the client
                log.error("stream_failed", exc_type=type(exc).__name__)
                failure = RagwardError()
        except BaseException:  # the client left (cancelled) or the server is stopping
            self._gw.pipeline.later(self._close("disconnected"))
            raise
        if failure is not None:
            await self._close("error", failure.code)
            yield self._error_event(failure)
            return
        assert answer.finished is not None
        yield _sse(chunk_object(**ids, delta={}, finish_reason=answer.finished.finish_reason,
                                sources=answer.sources))
        usage = answer.finished.usage
        if self._chat.include_usage:
            yield _sse(chunk_object(**ids, delta=None, usage=usage))
        try:
            await self._close("completed")
        except DependencyUnavailable as exc:
            yield self._error_event(exc)
            return
        yield DONE

    async def _close(self, outcome: str, reason: str | None = None) -> None:
        """Settle, then make the closing audit event durable (raises if it cannot be,
        for a completed stream; a failed or abandoned one only logs)."""
        answer = self._answer
        usage = await answer.close()
        summary = _summary(answer, usage, self._started, streamed=True, outcome=outcome)
        self._gw.metrics.observe_stream(summary, disconnected=outcome == "disconnected")
        closing = replace(
            self._opening, usage=usage, redactions=answer.redactions, chat=summary,
            reason=reason if outcome == "error" else (
                "client_disconnected" if outcome == "disconnected" else None),
        )
        try:
            await self._finish(closing)
        except DependencyUnavailable:
            log.error("stream_audit_not_durable", outcome=outcome)
            if outcome == "completed":
                raise

    def _error_event(self, exc: RagwardError) -> bytes:
        return _sse({"error": {"message": exc.message, "type": "api_error", "param": None,
                               "code": exc.code}, "request_id": self._request_id})


@get("/v1/models", before_request=authenticated, opt={**_OPENAI, AUDIT_ACTION: "models.list"},
     responses=_MODEL_ERRORS, summary="The indexes the caller may use, as OpenAI models")
async def list_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
    principal = principal_of(request)
    return {"object": "list", "data": await _models(request, principal)}


@get("/v1/models/{model_id:path}", before_request=authenticated,
     opt={**_OPENAI, AUDIT_ACTION: "models.read"}, responses=_MODEL_ERRORS,
     summary="One index the caller may use, as an OpenAI model")
async def retrieve_model(
    request: Request[Any, Any, Any], model_id: FromPath[str]
) -> dict[str, Any]:
    principal = principal_of(request)
    model = model_id.lstrip("/")
    index = model.removeprefix("ragward/")
    report(request.scope, Outcome(index=index))
    for found in await _models(request, principal):
        if found["id"] == index:
            return {**found, "id": model}
    raise _no_such_model(model)


async def _models(request: Request[Any, Any, Any], principal: Principal) -> list[dict[str, Any]]:
    """The caller's tenant's own and shared indexes, narrowed by the allow-lists
    (:meth:`Components.indexes_for`), that it may query."""
    gw = components_of(request.app.state)
    indexes = await gw.indexes_for(principal, caller_of(request, principal).request_id)
    created = int(time.time())
    return [model_object(i.name, created) for i in indexes if _may_use(gw, principal, i.name)]


OPENAI_ROUTES = [chat_completions, list_models, retrieve_model]
