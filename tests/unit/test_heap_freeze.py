"""The serving processes move their start-up heap out of the cyclic collector's scans."""

from __future__ import annotations

import asyncio
import gc
import weakref

from litestar import Litestar

from ragward import serve


def test_the_start_up_hook_freezes_everything_alive_and_collects_garbage_first() -> None:
    """After the hook, the objects alive at start-up are frozen (gc.get_freeze_count),
    garbage cycles made before it were collected rather than frozen, and what is
    allocated afterwards is collected as usual."""

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.unfreeze()
    before = weakref.ref(Cycle())  # unreachable at once: only the collector frees it
    try:
        asyncio.run(serve.freeze_heap(Litestar()))
        assert gc.get_freeze_count() > 0
        assert before() is None  # collected, not frozen
        after = weakref.ref(Cycle())
        gc.collect()
        assert after() is None  # later garbage is still the collector's
    finally:
        gc.unfreeze()
