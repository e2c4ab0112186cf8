"""Tenant-isolated answer cache: Redis when configured, in-process otherwise.

The key is a SHA-256 over tenant, index, index version, top_k and the
normalised *redacted* question — encoded as one JSON array, so no choice of
values (a tenant holding a separator) can make two different tuples collide —
so no answer can cross tenants (a shared index included), a re-ingest
(new index version) makes old entries unreachable, and no raw PII is ever part
of a key. Values are the redacted answer as msgspec JSON; entries expire after
the configured TTL. A cache that fails (Redis down) is a miss, never an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Protocol

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from gateway.autopipeline import AutoPipeline
from gateway.fingerprint import normalise_question

log = structlog.get_logger(__name__)

KEY_PREFIX = "ragward:cache:"


_key_material = msgspec.json.Encoder()

__all__ = ["AnswerCache", "LocalCache", "RedisCache", "cache_key", "normalise_question"]


def cache_key(tenant: str, index: str, version: str, top_k: int, redacted_question: str) -> str:
    material = _key_material.encode(
        [tenant, index, version, top_k, normalise_question(redacted_question)]
    )
    return hashlib.sha256(material).hexdigest()


class AnswerCache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes) -> None: ...

    def redis_key(self, key: str) -> str | None:
        """The entry's Redis key, so the quota check can read it in its own round trip;
        None when the cache is not in Redis."""
        ...


class LocalCache:
    """Bounded LRU with TTL, for one process (embedded mode)."""

    def __init__(self, ttl_s: int, max_entries: int) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def redis_key(self, key: str) -> str | None:
        return None

    async def set(self, key: str, value: bytes) -> None:
        self._entries[key] = (time.monotonic() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class RedisCache:
    """Shared by every gateway replica; errors degrade to misses."""

    def __init__(
        self,
        client: aioredis.Redis,
        ttl_s: int,
        timeout_s: float,
        prefix: str = KEY_PREFIX,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        self._pipeline = pipeline or AutoPipeline(client)  # batched with other requests'
        self._ttl = ttl_s
        self._timeout = timeout_s
        self._prefix = prefix

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._pipeline.execute_command("GET", self._prefix + key)
            return value if isinstance(value, bytes) or value is None else value.encode()
        except (RedisError, TimeoutError, OSError) as exc:
            log.warning("cache_unavailable", op="get", error=type(exc).__name__)
            return None

    async def set(self, key: str, value: bytes) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._pipeline.execute_command(
                    "SET", self._prefix + key, value, "EX", self._ttl
                )
        except (RedisError, TimeoutError, OSError) as exc:
            log.warning("cache_unavailable", op="set", error=type(exc).__name__)
