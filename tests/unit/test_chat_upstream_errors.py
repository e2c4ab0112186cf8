"""rag_core's error events in a chat stream, as the gateway's domain errors (gateway.chat)."""

from __future__ import annotations

import pytest

from gateway.chat import upstream_error
from rag_core.schemas import ErrorEvent
from ragward.errors import (
    DependencyUnavailable,
    NotFound,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)


def test_a_store_down_mid_chat_is_dependency_unavailable_without_rag_cores_words() -> None:
    """An index's vector store failing during a chat is the same 503 as for a query:
    ``dependency_unavailable``, not rag_core being unavailable (which the client would
    read as the whole service down), and the store's error type stays in rag_core's log."""
    event = ErrorEvent(code="dependency_unavailable", status=503,
                       message="the pgvector store is unavailable (OperationalError)")
    error = upstream_error(event)
    assert type(error) is DependencyUnavailable
    assert "pgvector" not in error.message and "OperationalError" not in error.message


@pytest.mark.parametrize(("status", "kind"), [
    (404, NotFound), (503, UpstreamUnavailable), (504, UpstreamTimeout), (500, UpstreamError),
])
def test_other_error_events_map_by_status(status: int, kind: type[Exception]) -> None:
    """Every other error event maps by its status, as before."""
    assert type(upstream_error(ErrorEvent(code="x", status=status, message="m"))) is kind
