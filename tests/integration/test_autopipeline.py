"""gateway.autopipeline on a real Redis: one round trip per loop turn, errors kept apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from gateway.autopipeline import AutoPipeline
from ragward.devservices import free_port

pytestmark = pytest.mark.redis


class CountingRedis(aioredis.Redis):
    """The real client, counting the pipelines (round trips) it sends."""

    pipelines = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.pipelines += 1
        return super().pipeline(*args, **kwargs)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[CountingRedis]:
    redis = CountingRedis.from_url(redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_commands_of_one_turn_share_one_round_trip(
    client: CountingRedis, unique: str
) -> None:
    batcher = AutoPipeline(client)
    key = f"ap:{unique}"
    replies = await asyncio.gather(
        *(batcher.execute_command("INCR", key) for _ in range(50)),
        batcher.execute_command("GET", key),
    )
    assert replies[:50] == list(range(1, 51))  # in order, each caller its own reply
    assert replies[50] == b"50"
    assert client.pipelines == 1
    assert await batcher.execute_command("GET", key) == b"50"  # alone in its turn:
    assert client.pipelines == 1  # sent as a plain command, not a pipeline of one


async def test_a_failing_command_fails_only_its_caller(client: CountingRedis, unique: str) -> None:
    batcher = AutoPipeline(client)
    key = f"ap:{unique}"
    results = await asyncio.gather(
        batcher.execute_command("SET", key, "not a number"),
        batcher.execute_command("INCR", key),
        batcher.execute_command("GET", key),
        return_exceptions=True,
    )
    assert results[0] is True
    assert isinstance(results[1], ResponseError)
    assert results[2] == b"not a number"
    assert client.pipelines == 1


async def test_a_script_redis_forgot_is_loaded_again(client: CountingRedis, unique: str) -> None:
    script = client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    batcher = AutoPipeline(client)
    key = f"ap:{unique}"
    assert await batcher.evalsha(script, [key], [5]) == 5
    await client.script_flush()  # what a restarted Redis looks like
    assert await batcher.evalsha(script, [key], [2]) == 7


async def test_a_caller_that_gives_up_does_not_disturb_the_others(
    client: CountingRedis, unique: str
) -> None:
    batcher = AutoPipeline(client)
    key = f"ap:{unique}"
    slow = batcher.execute_command("INCR", key)
    other = batcher.execute_command("INCR", key)
    slow.cancel()  # its caller's asyncio.timeout expired
    assert await other == 2  # the cancelled command was still sent, in order
    assert await client.get(key) == b"2"


async def test_an_unreachable_redis_fails_every_caller_of_the_batch() -> None:
    redis = aioredis.Redis(port=free_port(), socket_connect_timeout=1)
    batcher = AutoPipeline(redis)
    try:
        results = await asyncio.gather(
            batcher.execute_command("GET", "a"),
            batcher.execute_command("GET", "b"),
            return_exceptions=True,
        )
        with pytest.raises((RedisConnectionError, OSError)):
            await batcher.execute_command("GET", "alone")  # a batch of one, sent plainly
    finally:
        await redis.aclose()
    assert all(isinstance(r, (RedisConnectionError, OSError)) for r in results), results


async def test_close_sends_what_is_queued(client: CountingRedis, unique: str) -> None:
    batcher = AutoPipeline(client)
    key = f"ap:{unique}"
    reply = batcher.execute_command("SET", key, "v")
    await batcher.aclose()
    assert reply.done() and reply.result() is True
    assert await client.get(key) == b"v"


async def test_a_full_batch_goes_out_without_waiting_for_the_turn(
    client: CountingRedis, unique: str
) -> None:
    batcher = AutoPipeline(client, max_batch=10)
    replies = await asyncio.gather(
        *(batcher.execute_command("INCR", f"ap:{unique}") for _ in range(25))
    )
    assert sorted(replies) == list(range(1, 26))  # batches may overlap; none is lost
    assert client.pipelines == 3


async def test_timeout_s_bounds_every_caller_of_a_batch_redis_holds(
    client: CountingRedis, unique: str
) -> None:
    """With ``timeout_s`` a caller waits at most that long from queueing its command: a
    batch Redis holds (BLPOP on an empty list) fails every caller still waiting with
    TimeoutError, as asyncio.timeout around each call did, long before Redis answers;
    a later batch is answered as usual."""
    batcher = AutoPipeline(client, timeout_s=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        batcher.execute_command("BLPOP", f"ap:{unique}:empty", 1),
        batcher.execute_command("SET", f"ap:{unique}:held", "v"),
        return_exceptions=True,
    )
    assert all(isinstance(r, TimeoutError) for r in results), results
    assert loop.time() - started < 0.9  # the deadline, not BLPOP's own second
    assert await batcher.execute_command("SET", f"ap:{unique}:later", "v") is True
    await batcher.aclose()  # waits for the held batch too
    assert await client.get(f"ap:{unique}:held") == b"v"  # it was sent, just not awaited
