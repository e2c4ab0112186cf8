"""Per-request token counting: concurrent requests never see each other's counts."""

from __future__ import annotations

import asyncio

from rag_core.embedding import HashedEmbedding
from rag_core.usage import UsageTracker, report_embedding_tokens


async def test_concurrent_tasks_count_only_their_own_tokens() -> None:
    """Two tasks embedding through one shared model each get a counter with only their text."""
    tracker = UsageTracker()
    model = HashedEmbedding(callback_manager=tracker.callback_manager)

    async def one(text: str, pause: float) -> int:
        with tracker.track() as usage:
            await asyncio.sleep(pause)
            await model.aget_query_embedding(text)
            await asyncio.sleep(pause)
            return usage.embedding_tokens

    short, long = "leave", "how many days of annual leave do full time employees receive"
    got = await asyncio.gather(one(short, 0.02), one(long, 0.01))
    assert got == [tracker.count(short), tracker.count(long)]


def test_server_reported_embedding_tokens_win() -> None:
    """A backend that knows the server's count reports it; that number replaces the estimate."""
    tracker = UsageTracker()
    model = HashedEmbedding(callback_manager=tracker.callback_manager)
    with tracker.track() as usage:
        model.get_query_embedding("some words here")
        report_embedding_tokens(42)
    assert usage.embedding_tokens == 42


def test_nothing_is_counted_outside_a_request() -> None:
    """Events outside track() go nowhere (no global counter accumulates)."""
    tracker = UsageTracker()
    model = HashedEmbedding(callback_manager=tracker.callback_manager)
    model.get_query_embedding("outside")
    report_embedding_tokens(5)  # no-op
    with tracker.track() as usage:
        pass
    assert usage.embedding_tokens == 0 and usage.prompt_tokens == 0
