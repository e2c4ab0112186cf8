"""The real services the suite runs against answer as the real thing."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def test_kafka_round_trip_on_its_own_topic(kafka_bootstrap: str, unique: str) -> None:
    """A message produced with acks=all to a fresh topic comes back to a consumer intact."""
    topic = f"test-roundtrip-{unique}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        sent = [f"m{i}".encode() for i in range(20)]
        for value in sent:
            await producer.send_and_wait(topic, value, key=b"tenant-a")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        received: list[bytes] = []
        async with asyncio.timeout(20):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    received.extend(r.value for r in records)
    finally:
        await consumer.stop()
    # one key -> one partition -> order preserved
    assert received == sent


async def test_redis_is_real(redis_url: str, unique: str) -> None:
    """Redis evaluates Lua atomically and expires keys: the features quotas rely on."""
    client = aioredis.from_url(redis_url)
    try:
        key = f"test:{unique}"
        assert await client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, key, 5) == 5
        await client.pexpire(key, 50)
        await asyncio.sleep(0.1)
        assert await client.get(key) is None
    finally:
        await client.aclose()
