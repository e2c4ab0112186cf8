"""Every long-lived client the gateway uses, built and closed in one place.

:func:`open_components` is the gateway's lifespan: it creates the pooled HTTP
session, Redis client, event publisher, quota limiter, cache, redactor and
upstream from settings — or takes ready-made ones (``ragward serve`` passes its
in-process rag_core and bus; tests pass theirs) — and closes what it created in
``finally``. Background tasks (index-version refresh, status events) are
awaited on the way out, never left dangling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
import structlog

from gateway.auth import AccessPolicy, Authenticator, Principal, jwks_cache
from gateway.autopipeline import AutoPipeline
from gateway.cache import AnswerCache, LocalCache, RedisCache
from gateway.chat import ChatPipeline
from gateway.configuration import (
    http_upstream_config,
    quota_config,
    redis_config,
    resilience_config,
    token_config,
)
from gateway.forward import HttpUpstream, ResilientUpstream, Upstream
from gateway.metrics import GatewayMetrics
from gateway.pii import Redactor, Scanner
from gateway.pipeline import QueryPipeline
from gateway.quota import QuotaLimiter, make_quota
from gateway.redis_client import RedisClient, check_redis_access, redis_connection
from rag_core.schemas import IndexInfo
from ragward.errors import ConfigError
from ragward.settings import Settings, env_name
from telemetry.bus import Publisher
from telemetry.events import StatusEvent, new_event_id, now_rfc3339
from telemetry.signing import EventSigner

log = structlog.get_logger(__name__)

AuditReader = Callable[..., Awaitable[dict[str, Any]]]
STATUS_INTERVAL_S = 15.0
VERSION_REFRESH_S = 2.0


@dataclass
class Components:
    settings: Settings
    authenticator: Authenticator
    policy: AccessPolicy
    pipeline: QueryPipeline
    quota: QuotaLimiter
    publisher: Publisher
    metrics: GatewayMetrics
    upstream: ResilientUpstream
    chat: ChatPipeline
    signer: EventSigner  # signs every audit, usage and status event (telemetry.signing)
    redactor: Redactor  # the pipelines', also for user agents and error messages
    audit_reader: AuditReader | None = None
    redis: RedisClient | None = None
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _upstream_seen: bool = False

    def spool(self) -> tuple[int, int]:
        """(bytes waiting in the audit spool, its capacity); (0, 0) without a spool."""
        return (int(getattr(self.publisher, "spool_bytes", 0)),
                int(getattr(self.publisher, "spool_capacity_bytes", 0)))

    async def indexes_for(self, principal: Principal, request_id: str) -> list[IndexInfo]:
        """The indexes ``principal`` may query (``/v1/models``): rag_core's list for its
        tenant (own and shared), narrowed by the allow-lists, never widened."""
        listed = await self.upstream.indexes(
            tenant=principal.tenant, subject=principal.subject, request_id=request_id
        )
        return [info for info in listed if self.policy.index_allowed(principal, info.name)]

    async def readiness(self) -> tuple[str, dict[str, str]]:
        """("ok" | "degraded" | "unavailable", reason per check).

        Unavailable until rag_core has answered once. A later rag_core outage only
        degrades readiness: taking every replica out of the load balancer at once
        would replace the circuit breaker's JSON 503s with the balancer's own page.
        """
        checks: dict[str, str] = {}
        up, reason = await self.upstream.ready()
        checks["rag_core"] = reason
        self._upstream_seen = self._upstream_seen or up
        status = "ok" if up else ("degraded" if self._upstream_seen else "unavailable")
        modes = {"rpm": self.settings.quota_rpm_mode, "tokens": self.settings.quota_tokens_mode}
        for control, degraded in self.quota.status().items():
            if degraded:
                checks[f"quota_{control}"] = f"degraded: Redis unreachable, {modes[control]}"
                if modes[control] == "fail_closed":
                    status = "unavailable"
                elif status == "ok":
                    status = "degraded"
            else:
                checks[f"quota_{control}"] = "ok"
        used, capacity = self.spool()
        if used:
            checks["audit_spool"] = f"{used} of {capacity} bytes waiting for Kafka"
            if status == "ok":
                status = "degraded"
        return status, checks


def model_name(settings: Settings) -> str:
    return settings.openai_model if settings.llm == "openai" else "local-extractive"


@contextlib.asynccontextmanager
async def open_components(
    settings: Settings,
    *,
    metrics: GatewayMetrics,
    upstream: Upstream | None = None,
    publisher: Publisher | None = None,
    audit_reader: AuditReader | None = None,
    pii_scanner: Scanner | None = None,
    signer: EventSigner | None = None,
) -> AsyncIterator[Components]:
    tokens = token_config(settings)
    if signer is None:
        from telemetry.event_keys import signer_from_settings

        signer = signer_from_settings(settings)
    async with contextlib.AsyncExitStack() as stack:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.max_concurrent_upstream, ttl_dns_cache=300,
                enable_cleanup_closed=True,
            ),
            raise_for_status=False,
        )
        stack.push_async_callback(session.close)

        redis_client: RedisClient | None = None
        redis_pipeline: AutoPipeline | None = None
        if settings.redis_url:
            # Bounded: concurrency is already capped by the upstream limit, and a full pool
            # fails fast into the configured quota mode. (The blocking pool's per-call
            # timeout cost a measurable share of the gateway's CPU.)
            # No socket_timeout: every call is bounded by redis_timeout_s instead (the
            # auto-pipeline's deadline per batch, asyncio.timeout elsewhere), which on 3.11
            # costs less than redis-py wrapping each send in a task.
            redis_client = await stack.enter_async_context(redis_connection(
                redis_config(settings), max_connections=512,
                socket_connect_timeout=settings.redis_timeout_s, health_check_interval=5,
            ))
            await check_redis_access(redis_client)  # a refusal stops start-up; down does not
            # One auto-pipeline for quota and cache: a turn's commands share a round trip.
            redis_pipeline = AutoPipeline(redis_client, timeout_s=settings.redis_timeout_s)
            stack.push_async_callback(redis_pipeline.aclose)

        if publisher is None:
            from telemetry.configuration import make_bus

            bus = make_bus(settings)
            publisher = bus.publisher()
            await publisher.start()
            stack.push_async_callback(publisher.stop)

        http_upstream: HttpUpstream | None = None
        if upstream is None:
            http_upstream = HttpUpstream(http_upstream_config(settings), session)
            upstream = http_upstream
        resilient = ResilientUpstream(upstream, resilience_config(settings))

        quota = make_quota(quota_config(settings), redis_client, pipeline=redis_pipeline)
        stack.push_async_callback(quota.close)
        if load_scripts := getattr(quota, "load_scripts", None):
            try:  # warm the pool and the Lua cache; a Redis that is down is not fatal here
                await load_scripts()
            except Exception as exc:
                log.warning("quota_warmup_failed", error=type(exc).__name__)
        cache: AnswerCache | None = None
        if settings.cache_enabled:
            cache = (
                RedisCache(redis_client, settings.cache_ttl_s, settings.redis_timeout_s,
                           pipeline=redis_pipeline)
                if redis_client is not None
                else LocalCache(settings.cache_ttl_s, settings.cache_max_entries)
            )
        try:
            redactor = Redactor(settings.pii_actions, scanner=pii_scanner)
        except ValueError as exc:
            raise ConfigError(f"{env_name('pii_actions')}: {exc}") from None
        if redactor.engine != "native":  # correct, but a third as fast: say so once
            log.warning("pii_scanner_not_native", engine=redactor.engine,
                        hint="install native/ (make install) for the compiled scanner")
        pipeline = QueryPipeline(
            resilient, quota, redactor, cache,
            answer_allowance_tokens=settings.quota_answer_allowance_tokens,
            max_question_chars=settings.max_question_chars,
            max_batch=settings.max_batch,
        )
        components = Components(
            settings=settings,
            authenticator=Authenticator(tokens, jwks_cache(tokens, session)),
            policy=AccessPolicy(settings.roles, settings.index_allow),
            pipeline=pipeline,
            chat=ChatPipeline(pipeline, default_max_tokens=settings.chat_max_tokens,
                              memory_tokens=settings.chat_memory_tokens),
            quota=quota,
            publisher=publisher,
            signer=signer,
            redactor=redactor,
            metrics=metrics,
            upstream=resilient,
            audit_reader=audit_reader,
            redis=redis_client,
        )
        metrics.watch(
            circuit_state=lambda: float(resilient.breaker.state),
            quota_status=quota.status,
            spool=components.spool,
            tasks=partial(_task_count, asyncio.get_running_loop()),
        )
        tasks = [asyncio.create_task(_publish_status(components), name="status-events")]
        if http_upstream is not None:
            tasks.append(asyncio.create_task(_refresh_versions(http_upstream), name="versions"))
        try:
            yield components
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await components.pipeline.drain()  # settle reservations, fill the cache


async def _refresh_versions(upstream: HttpUpstream) -> None:
    """Index versions feed the cache key: a re-ingest must make old entries unreachable."""
    while True:
        with contextlib.suppress(Exception):  # rag_core down: keep the last known versions
            await upstream.refresh_versions()
        await asyncio.sleep(VERSION_REFRESH_S)


def _task_count(loop: asyncio.AbstractEventLoop) -> int:
    """Tasks alive in ``loop`` (read at scrape time, on the loop's own thread)."""
    return len(asyncio.all_tasks(loop))


async def _publish_status(components: Components) -> None:
    """Tell the alert consumer about degraded quota control and a filling spool."""
    while True:
        used, capacity = components.spool()
        event = StatusEvent(
            event_id=new_event_id(), ts=now_rfc3339(), instance=components.instance,
            quota_degraded=components.quota.status(), spool_bytes=used,
            spool_capacity_bytes=capacity,
            circuit_state=components.upstream.breaker.state.name.lower(),
        )
        with contextlib.suppress(Exception):
            await components.publisher.publish(
                components.settings.topic_usage, "_status", components.signer.sign(event)
            )
        await asyncio.sleep(STATUS_INTERVAL_S)
