"""Counting the turns other work gets on the event loop: how a test shows that an await
does not block the loop (a blocking call inside it leaves the count unchanged)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass
class LoopTurns:
    count: int = 0


@asynccontextmanager
async def loop_turns(interval_s: float = 0.0) -> AsyncIterator[LoopTurns]:
    """A task that counts one turn per ``interval_s`` sleep while the block runs."""
    turns = LoopTurns()

    async def other_work() -> None:
        while True:
            await asyncio.sleep(interval_s)
            turns.count += 1

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)  # let it start, so the count starts from the block
    turns.count = 0
    try:
        yield turns
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
