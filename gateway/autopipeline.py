"""Redis auto-pipelining: the commands of one event-loop turn go out together.

Under load a gateway issues many small Redis commands at once (a quota check
per arriving request, a settlement and a cache write per finished one). Sent
one by one through redis-py, each pays a pool checkout, a write, a read and the
client's bookkeeping — most of the gateway's CPU. :class:`AutoPipeline`
queues every command issued in the same turn of the event loop and sends the
queue as one non-transactional pipeline on the next turn (one write, one read
for the lot), as ioredis' ``enableAutoPipelining`` does; each caller still
awaits only its own reply. At low load a batch is one command and the cost is
one extra loop turn, and a batch of one goes out as a plain command.

Semantics are those of sending the commands separately: independently — one
command's error (``NOSCRIPT``, ``WRONGTYPE``) goes to its caller only, and a
connection failure goes to every caller of that batch. A batch runs in the
order it was queued; batches, like separate pool connections, may overlap
(a caller that awaits each reply before its next command sees its own order).
With ``timeout_s`` every reply is awaited at most that long from when its command
was queued, and then raises ``TimeoutError`` (what ``asyncio.timeout`` around the
call would raise): one timer per batch rather than one per caller, which at a few
microseconds each was a measurable share of a request's CPU with four Redis calls
per request. A reply that arrives after its caller gave up is dropped.

On a Redis Cluster the batch is a cluster pipeline: redis-py sends each node its
share of it, the nodes in parallel, so a batch still costs one round trip (to
each node it touches), and a tenant's commands, which share a slot
(:mod:`gateway.keyspace`), go to one node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from gateway.redis_client import RedisClient

__all__ = ["AutoPipeline"]

_Pending = tuple[tuple[Any, ...], asyncio.Future[Any]]


class AutoPipeline:
    """Batches the Redis commands of each event-loop turn into one pipeline."""

    def __init__(self, client: RedisClient, *, max_batch: int = 1024,
                 timeout_s: float | None = None) -> None:
        self._client = client
        self._max_batch = max_batch
        self._timeout = timeout_s
        self._queue: list[_Pending] = []
        self._expiry: asyncio.TimerHandle | None = None  # the queued batch's deadline
        self._flushes: set[asyncio.Task[None]] = set()

    def execute_command(self, *args: Any) -> asyncio.Future[Any]:
        """Queue ``args`` (e.g. ``"SET", key, value``); the future holds the reply."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, reply))
        if len(self._queue) == 1:
            if self._timeout is not None:
                self._expiry = loop.call_later(self._timeout, _expire, self._queue)
            # A task starts on the next turn of the loop: it takes what is queued by then.
            self._spawn(self._send_queued())
        elif len(self._queue) >= self._max_batch:
            self._spawn(self._send_expiring(*self._take()))
        return reply

    async def evalsha(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered Lua script; if Redis lost it (a restart, ``SCRIPT FLUSH``),
        the script object loads it again and runs it on its own."""
        try:
            return await self.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            async with asyncio.timeout(self._timeout):
                return await script(keys=keys, args=args)

    def _spawn(self, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(sending)
        self._flushes.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(self._flushes.discard)

    def _take(self) -> tuple[list[_Pending], asyncio.TimerHandle | None]:
        """The queued batch and its deadline; the next command starts a new one."""
        batch, self._queue = self._queue, []
        expiry, self._expiry = self._expiry, None
        return batch, expiry

    async def _send_queued(self) -> None:
        if self._queue:
            await self._send_expiring(*self._take())

    async def _send_expiring(self, batch: list[_Pending],
                             expiry: asyncio.TimerHandle | None) -> None:
        try:
            await self._send(batch)
        finally:
            if expiry is not None:
                expiry.cancel()

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:  # alone in its turn: a plain command costs less than a pipeline
                replies = [await self._one(batch[0][0])]
            else:
                pipe = self._client.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc if isinstance(exc, Exception) else ConnectionError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, reply), value in zip(batch, replies, strict=True):
            if reply.done():
                continue  # its caller timed out and went on
            if isinstance(value, Exception):
                reply.set_exception(value)
            else:
                reply.set_result(value)

    async def _one(self, args: tuple[Any, ...]) -> Any:
        """One command; its own error comes back as a value, as a pipeline returns it."""
        try:
            return await self._client.execute_command(*args)
        except ResponseError as exc:
            return exc

    async def aclose(self) -> None:
        """Send what is queued and wait for the batches in flight."""
        if self._queue:
            self._spawn(self._send_queued())
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


def _expire(batch: list[_Pending]) -> None:
    """A batch's deadline: every caller still waiting gets the TimeoutError it would
    have got from ``asyncio.timeout`` (the batch itself goes on; late replies are dropped)."""
    for _, reply in batch:
        if not reply.done():
            reply.set_exception(TimeoutError())
