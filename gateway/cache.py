"""Tenant-isolated answer cache: Redis when configured, in-process otherwise.

The key is a SHA-256 over tenant, index, index version, top_k and the
normalised *redacted* question — encoded as one JSON array, so no choice of
values (a tenant holding a separator) can make two different tuples collide —
so no answer can cross tenants (a shared index included), a re-ingest
(new index version) makes old entries unreachable, and no raw PII is ever part
of a key. The digest follows the tenant's hash tag (:mod:`gateway.keyspace`), so
a request's entries share the slot of its quota keys: one ``MGET`` reads them
all, on a cluster too, from the node its quota check goes to. Values are the
redacted answer as msgspec JSON; entries expire after the configured TTL. A cache
that fails (Redis down) is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import msgspec
import structlog

from gateway.autopipeline import AutoPipeline
from gateway.fingerprint import normalise_question
from gateway.keyspace import check_prefix, tenant_scope
from gateway.redis_client import REDIS_FAILURES, RedisClient

log = structlog.get_logger(__name__)

KEY_PREFIX = "ragward:cache:"


_key_material = msgspec.json.Encoder()

__all__ = ["AnswerCache", "LocalCache", "RedisCache", "cache_key", "normalise_question"]


def cache_key(tenant: str, index: str, version: str, top_k: int, redacted_question: str) -> str:
    """``{tenant}:`` and the digest: the tenant twice, as hash tag and inside the digest."""
    material = _key_material.encode(
        [tenant, index, version, top_k, normalise_question(redacted_question)]
    )
    return f"{tenant_scope('', tenant)}:{hashlib.sha256(material).hexdigest()}"


class AnswerCache(Protocol):
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The entries of ``keys`` (one tenant's), None for a miss; never raises."""
        ...

    async def set(self, key: str, value: bytes) -> None: ...


class LocalCache:
    """Bounded LRU with TTL, for one process (embedded mode)."""

    def __init__(self, ttl_s: int, max_entries: int) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    def _get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes) -> None:
        self._entries[key] = (time.monotonic() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class RedisCache:
    """Shared by every gateway replica; errors degrade to misses."""

    def __init__(
        self,
        client: RedisClient,
        ttl_s: int,
        timeout_s: float,
        prefix: str = KEY_PREFIX,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        # Batched with other requests' commands; the pipeline bounds each reply's wait (a
        # pipeline handed in, with its own timeout_s).
        self._pipeline = pipeline or AutoPipeline(client, timeout_s=timeout_s)
        self._ttl = ttl_s
        self._prefix = check_prefix(prefix)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            values = await self._pipeline.execute_command(
                "MGET", *(self._prefix + key for key in keys)
            )
        except REDIS_FAILURES as exc:
            log.warning("cache_unavailable", op="get", error=type(exc).__name__)
            return [None] * len(keys)
        return [v if isinstance(v, bytes) or v is None else v.encode() for v in values]

    async def set(self, key: str, value: bytes) -> None:
        try:
            await self._pipeline.execute_command("SET", self._prefix + key, value, "EX", self._ttl)
        except REDIS_FAILURES as exc:
            log.warning("cache_unavailable", op="set", error=type(exc).__name__)
