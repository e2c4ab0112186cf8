"""structlog set-up: JSON lines to stderr (or console output for humans).

``merge_contextvars`` runs first so a ``request_id`` bound once per request
appears on every line that request logs; with tracing on, every line logged inside a
span also carries its ``trace_id`` and ``span_id`` (:func:`ragward.tracing.add_trace_ids`).
Call :func:`configure_logging` once from the command line entry point, never at import.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from ragward.tracing import add_trace_ids

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}

_SECRET_KEYS = frozenset({"authorization", "token", "password", "secret", "api_key",
                          "jwt", "internal_token"})


def _drop_secrets(
    _: object, __: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Last line of defence: a secret-looking key never reaches the log."""
    for key in _SECRET_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


class _ThroughStructlogWriter(logging.Handler):
    """Emits standard-library records through structlog's ``WriteLogger``.

    ``logging.StreamHandler`` and structlog's loggers each hold their own lock, and
    ``print`` writes a line and its newline apart: with two threads logging, lines
    interleaved and a collector got broken JSON. ``WriteLogger`` writes each line
    whole under one lock per file, shared by every writer of that file.
    """

    def __init__(self, writer: structlog.WriteLogger) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.msg(self.format(record))
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


def configure_logging(
    fmt: Literal["json", "console"] = "json", level: str = "info"
) -> None:
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        _drop_secrets,
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiokafka, uvicorn, httpx) log through the standard library: same format,
    # and the same writer, so a line from a library's thread never lands inside ours.
    handler = _ThroughStructlogWriter(structlog.WriteLogger(sys.stderr))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries chatter at INFO (uvicorn, aiokafka); only their warnings and up are kept.
    root.setLevel(max(numeric, logging.WARNING))
