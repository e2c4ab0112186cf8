"""What the gateway decided for one request, as one immutable value.

The step that decides returns an :class:`Outcome` — the pipelines
(:mod:`gateway.pipeline`, :mod:`gateway.chat`) for questions and conversations,
a route handler for what it refuses itself — and the caller decides where it
goes: the HTTP handler turns it into a response (body and rate-limit headers),
the recorder (:mod:`gateway.recorder`) into the request's audit and usage events.
Nothing fills it in afterwards; a later phase (a stream's end) is a new value
made with :func:`dataclasses.replace`.

A refusal is an outcome too (``error``): it keeps what was decided before it, so
the audit event of a rate-limited or failed question still carries its redacted
text and redaction counts. It never holds raw text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.quota import Admission
    from rag_core.schemas import QueryResponse, Usage
    from telemetry.events import ChatSummary

_NONE: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Outcome:
    index: str | None = None  # the index the request named, once it is known
    questions: int = 0
    questions_redacted: tuple[str, ...] = ()  # exactly the text forwarded (and hashed)
    redactions: Mapping[str, int] = field(default_factory=lambda: _NONE)  # PII, per type
    answers: tuple[QueryResponse, ...] = ()  # redacted, in the order asked
    cached: bool = False  # every answer came from the cache
    usage: Usage | None = None  # what rag_core (or the cache: zero) reported
    admission: Admission | None = None  # the quota's decision, once admitted
    reason: str | None = None  # a finer reason than the error's code, for the audit log
    chat: ChatSummary | None = None  # chat completions: how the answer went
    error: Exception | None = None  # why it was refused or failed; the handler raises it
