"""Forwarding a question to rag_core: over HTTP or in process, through one resilient path.

``Upstream`` is what the gateway calls. Two transports implement it —
:class:`HttpUpstream` (one pooled aiohttp session per process: measured at a
sixth of httpx's CPU per request, measured by bench/gateway.py) and :class:`LocalUpstream`
(the in-process :class:`rag_core.service.RagService` of ``ragward serve``) — and
:class:`ResilientUpstream` wraps either with the same protections:

* a bound on concurrent calls with a short wait queue, then 503 (never unbounded memory);
* retries with jittered backoff, only for failures that are safe to retry
  (the request never reached rag_core, or rag_core said 503);
* a circuit breaker: after N consecutive failures it answers 503 at once for a
  cool-down, then lets one probe through and closes again when it succeeds.

A streamed conversation (:meth:`Upstream.open_chat`) is protected the same way
until rag_core has answered; after that the stream holds its concurrency slot
until it is closed, and closing it early closes the connection, which cancels
rag_core's work.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

import aiohttp
import msgspec
import structlog

from rag_core.schemas import (
    BatchRequest,
    BatchResponse,
    ChatEvent,
    ChatRequest,
    IndexInfo,
    IndexList,
    QueryRequest,
    QueryResponse,
)
from ragward import tracing
from ragward.errors import (
    DependencyUnavailable,
    NotFound,
    Overloaded,
    RagwardError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from rag_core.service import RagService

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    subject: str
    request_id: str


class Upstream(Protocol):
    async def query(self, request: QueryRequest, caller: Caller) -> QueryResponse: ...

    async def query_batch(self, request: BatchRequest, caller: Caller) -> BatchResponse: ...

    async def indexes(self, *, tenant: str, subject: str, request_id: str) -> list[IndexInfo]:
        """The indexes ``tenant`` may query: its own and the shared ones, by name, each
        with its ``owner`` (None when ``shared``) and current ``version``. Another
        tenant's index is never listed. The gateway's role allow-lists are not applied
        here (:meth:`gateway.components.Components.indexes_for` does). rag_core down:
        ``UpstreamUnavailable``/``UpstreamTimeout``, as for a query."""
        ...

    def index_version(self, index: str) -> str | None: ...

    async def ready(self) -> tuple[bool, str]: ...

    async def open_chat(self, request: ChatRequest, caller: Caller) -> ChatOpened:
        """Start a streamed conversation. Errors before the first event raise here;
        the caller must ``aclose()`` the events (closing early cancels rag_core's work)."""
        ...


@dataclass(frozen=True, slots=True)
class ChatOpened:
    version: str | None  # the index version answering, when rag_core said
    events: AsyncGenerator[ChatEvent, None]


# --------------------------------------------------------------------- transports


class _NotSent(UpstreamUnavailable):
    """The request never reached rag_core: always safe to retry."""


@contextmanager
def _transport_errors() -> Iterator[None]:
    """aiohttp's failures as the upstream errors the retry policy decides on: nothing
    sent (safe to retry), too slow, or failed mid-way."""
    try:
        yield
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
        raise _NotSent(f"rag_core unreachable ({type(exc).__name__})") from None
    except TimeoutError:
        raise UpstreamTimeout() from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"rag_core failed ({type(exc).__name__})") from None


@dataclass(frozen=True, slots=True)
class HttpUpstreamConfig:
    """Where rag_core listens and how long to wait for it."""

    url: str
    timeout_s: float  # a whole answer; on a stream, each read
    connect_timeout_s: float
    internal_token: str | None = field(default=None, repr=False)  # X-Internal-Token


class HttpUpstream:
    """rag_core (or any service speaking its API) over HTTP."""

    def __init__(self, config: HttpUpstreamConfig, session: aiohttp.ClientSession) -> None:
        self._base = config.url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout_s, sock_connect=config.connect_timeout_s
        )
        self._static_headers = {"Content-Type": "application/json"}
        if config.internal_token:
            self._static_headers["X-Internal-Token"] = config.internal_token
        self._versions: dict[str, str] = {}
        self._response = msgspec.json.Decoder(QueryResponse)
        self._batch_response = msgspec.json.Decoder(BatchResponse)
        self._indexes = msgspec.json.Decoder(IndexList)
        self._events = msgspec.json.Decoder(ChatEvent)
        self._encoder = msgspec.json.Encoder()
        # A stream may run long: bound the wait for each read, not the whole answer.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout_s, sock_read=config.timeout_s,
        )

    def index_version(self, index: str) -> str | None:
        return self._versions.get(index)

    async def refresh_versions(self) -> None:
        """Learn index versions (cache keys) from rag_core; called periodically."""
        body = await self._call("GET", "/v1/indexes", None, None)
        self._versions = {i.name: i.version for i in self._indexes.decode(body).indexes}

    async def ready(self) -> tuple[bool, str]:
        try:
            async with self._session.get(
                self._base + "/ready", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                if response.status == 200:
                    return True, "ok"
                return False, f"rag_core /ready answered {response.status}"
        except (aiohttp.ClientError, TimeoutError):
            return False, "rag_core unreachable"

    async def query(self, request: QueryRequest, caller: Caller) -> QueryResponse:
        body = await self._call("POST", "/v1/query", self._encoder.encode(request), caller,
                                index=request.index)
        return self._response.decode(body)

    async def open_chat(self, request: ChatRequest, caller: Caller) -> ChatOpened:
        # The client span covers opening the stream; rag_core's server span, its child,
        # covers the whole answer.
        with _forwarding("POST", "/v1/chat/stream", caller) as span, _transport_errors():
            response = await self._session.post(
                self._base + "/v1/chat/stream", data=self._encoder.encode(request),
                headers=self._headers(caller), timeout=self._stream_timeout,
            )
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
        if response.status != 200:
            body = await response.read()
            response.release()
            raise _status_error(response.status, body)
        version = response.headers.get("X-Index-Version")
        if version:
            self._versions[request.index] = version
        return ChatOpened(version, self._read_events(response))

    async def _read_events(
        self, response: aiohttp.ClientResponse
    ) -> AsyncGenerator[ChatEvent, None]:
        try:
            async for line in response.content:
                if line.strip():
                    yield self._events.decode(line)
        except TimeoutError:
            raise UpstreamTimeout() from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"rag_core stream broke ({type(exc).__name__})") from None
        finally:
            response.close()  # early: drops the connection, so rag_core stops generating

    def _headers(self, caller: Caller | None) -> dict[str, str]:
        headers = dict(self._static_headers)
        if caller is not None:
            headers.update({"X-Tenant": caller.tenant, "X-Subject": caller.subject,
                            "X-Request-ID": caller.request_id})
            # rag_core continues the current span (the forwarding one), sampled or not
            tracing.inject(headers)
        return headers

    async def query_batch(self, request: BatchRequest, caller: Caller) -> BatchResponse:
        body = await self._call("POST", "/v1/query/batch", self._encoder.encode(request), caller,
                                index=request.index)
        return self._batch_response.decode(body)

    async def indexes(self, *, tenant: str, subject: str, request_id: str) -> list[IndexInfo]:
        body = await self._call("GET", "/v1/indexes", None, Caller(tenant, subject, request_id))
        try:
            return self._indexes.decode(body).indexes
        except msgspec.DecodeError:  # not rag_core's shape: its failure, not the client's
            raise UpstreamError("rag_core answered an unreadable index list") from None

    async def _call(
        self, method: str, path: str, payload: bytes | None, caller: Caller | None,
        index: str | None = None,
    ) -> bytes:
        with _forwarding(method, path, caller) as span, _transport_errors():
            async with self._session.request(
                method, self._base + path, data=payload, headers=self._headers(caller),
                timeout=self._timeout
            ) as response:
                body = await response.read()
                status = response.status
                version = response.headers.get("X-Index-Version")
            if span is not None:
                span.set_attribute("http.response.status_code", status)
        if status == 200:
            if version and index:
                self._versions[index] = version
            return body
        raise _status_error(status, body)


def _forwarding(
    method: str, path: str, caller: Caller | None
) -> AbstractContextManager[Span | None]:
    """The client span of one call to rag_core for a caller (each retry is its own
    attempt); the gateway's own periodic calls (index versions) are not traced."""
    if caller is None:
        return nullcontext()
    return tracing.span(f"{method} {path}", "client",
                        {"http.request.method": method, "url.template": path})


def _status_error(status: int, body: bytes) -> RagwardError:
    """rag_core's non-200 answer as the domain error the gateway passes on."""
    if status == 404:
        return NotFound("unknown index")
    if status in (400, 422):  # rag_core refused what the gateway let through: say what
        message = _error_field(body, "message")
        return ValidationFailed(message[:300] if message else "rag_core rejected the request")
    if status == 503 and _error_field(body, "code") == "dependency_unavailable":
        # rag_core is up, one of its dependencies (an index's vector store) is not: not
        # retried, and not a failure of rag_core for the circuit breaker (other indexes
        # still answer); the store's name and error type stay in rag_core's log
        return DependencyUnavailable()
    if status == 503:
        return UpstreamUnavailable()
    if status == 504:
        return UpstreamTimeout()
    return UpstreamError(f"rag_core answered {status}")


def _error_field(body: bytes, name: str) -> str | None:
    """A field of rag_core's contract-shaped error body; None when it is not one."""
    try:
        return str(msgspec.json.decode(body)["error"][name])
    except (msgspec.DecodeError, KeyError, TypeError):
        return None


class LocalUpstream:
    """The in-process rag_core of ``ragward serve``."""

    def __init__(self, service: RagService) -> None:
        self._service = service

    def index_version(self, index: str) -> str | None:
        return self._service.index_version(index)

    async def ready(self) -> tuple[bool, str]:
        return (True, "ok") if self._service.ready else (False, "indexes not loaded")

    async def query(self, request: QueryRequest, caller: Caller) -> QueryResponse:
        return await self._service.query(
            request, tenant=caller.tenant, subject=caller.subject, request_id=caller.request_id
        )

    async def query_batch(self, request: BatchRequest, caller: Caller) -> BatchResponse:
        return await self._service.query_batch(
            request, tenant=caller.tenant, subject=caller.subject, request_id=caller.request_id
        )

    async def indexes(self, *, tenant: str, subject: str, request_id: str) -> list[IndexInfo]:
        return self._service.indexes(tenant)

    async def open_chat(self, request: ChatRequest, caller: Caller) -> ChatOpened:
        version, events = await self._service.open_chat(
            request, tenant=caller.tenant, subject=caller.subject, request_id=caller.request_id
        )
        return ChatOpened(version, _generator(events))


async def _generator(events: AsyncIterator[ChatEvent]) -> AsyncGenerator[ChatEvent, None]:
    try:
        async for event in events:
            yield event
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()


# --------------------------------------------------------------------- protections


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(self, failure_threshold: int, reset_s: float) -> None:
        self._threshold = failure_threshold
        self._reset_s = reset_s
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.state = CircuitState.CLOSED

    def before_call(self) -> None:
        if self.state is CircuitState.CLOSED:
            return
        if self.state is CircuitState.OPEN and time.monotonic() - self._opened_at >= self._reset_s:
            self.state = CircuitState.HALF_OPEN
            self._probing = False
        if self.state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True  # this caller is the probe
            return
        raise UpstreamUnavailable("rag_core is unavailable (circuit open)")

    def on_success(self) -> None:
        if self.state is not CircuitState.CLOSED:
            log.info("circuit_closed")
        self._failures = 0
        self._probing = False
        self.state = CircuitState.CLOSED

    def on_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self.state is CircuitState.HALF_OPEN or self._failures >= self._threshold:
            if self.state is not CircuitState.OPEN:
                log.warning("circuit_opened", consecutive_failures=self._failures)
            self.state = CircuitState.OPEN
            self._opened_at = time.monotonic()


class ConcurrencyLimit:
    """At most ``limit`` calls at once, ``queue`` more waiting briefly; the rest get 503."""

    def __init__(self, limit: int, queue: int, queue_timeout_s: float) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self._max_waiting = queue
        self._waiting = 0
        self._timeout = queue_timeout_s
        self.in_flight = 0

    async def __aenter__(self) -> None:
        if self._semaphore.locked():
            if self._waiting >= self._max_waiting:
                raise Overloaded()
            self._waiting += 1
            try:
                await asyncio.wait_for(self._semaphore.acquire(), self._timeout)
            except TimeoutError:
                raise Overloaded() from None
            finally:
                self._waiting -= 1
        else:
            await self._semaphore.acquire()
        self.in_flight += 1

    async def __aexit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._semaphore.release()


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """How hard the gateway leans on rag_core: concurrency, queueing, retries, breaker."""

    max_concurrent: int
    queue: int  # requests waiting for a slot, then Overloaded
    queue_timeout_s: float
    retries: int  # of requests that are safe to repeat
    failure_threshold: int  # consecutive failures that open the breaker
    reset_s: float  # an open breaker lets one request try after this long


class ResilientUpstream:
    """Any Upstream behind a concurrency bound, safe retries and a circuit breaker."""

    def __init__(self, inner: Upstream, config: ResilienceConfig) -> None:
        self.inner = inner
        self.breaker = CircuitBreaker(config.failure_threshold, config.reset_s)
        self.limit = ConcurrencyLimit(config.max_concurrent, config.queue, config.queue_timeout_s)
        self._retries = config.retries

    def index_version(self, index: str) -> str | None:
        return self.inner.index_version(index)

    async def ready(self) -> tuple[bool, str]:
        return await self.inner.ready()

    async def query(self, request: QueryRequest, caller: Caller) -> QueryResponse:
        async with self.limit:
            return await self._with_retries(lambda: self.inner.query(request, caller))

    async def query_batch(self, request: BatchRequest, caller: Caller) -> BatchResponse:
        async with self.limit:
            return await self._with_retries(lambda: self.inner.query_batch(request, caller))

    async def indexes(self, *, tenant: str, subject: str, request_id: str) -> list[IndexInfo]:
        async with self.limit:
            return await self._with_retries(lambda: self.inner.indexes(
                tenant=tenant, subject=subject, request_id=request_id))

    async def open_chat(self, request: ChatRequest, caller: Caller) -> ChatOpened:
        """Retried like a query until rag_core answers; the stream holds its concurrency
        slot until it is closed."""
        await self.limit.__aenter__()
        try:
            opened = await self._with_retries(lambda: self.inner.open_chat(request, caller))
        except BaseException:
            await self.limit.__aexit__()
            raise
        return ChatOpened(opened.version, self._holding_slot(opened.events))

    async def _holding_slot(
        self, events: AsyncGenerator[ChatEvent, None]
    ) -> AsyncGenerator[ChatEvent, None]:
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
            await self.limit.__aexit__()

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            self.breaker.before_call()
            try:
                result = await call()
            except UpstreamError as exc:
                self.breaker.on_failure()
                safe = isinstance(exc, _NotSent) or type(exc) is UpstreamUnavailable
                if not safe or attempt >= self._retries:
                    raise _public(exc) from None
                attempt += 1
                await asyncio.sleep(min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
                continue
            except RagwardError:
                self.breaker.on_success()  # rag_core answered (e.g. unknown index): it is up
                raise
            self.breaker.on_success()
            return result


def _public(exc: UpstreamError) -> UpstreamError:
    """Drop internal subclasses so the client sees the contract's codes only."""
    if isinstance(exc, _NotSent):
        return UpstreamUnavailable()
    return exc
