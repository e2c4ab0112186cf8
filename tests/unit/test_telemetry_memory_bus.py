"""The in-process bus keeps Kafka's semantics: partitions, offsets, groups, commits, lag."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from telemetry.consumer import SeenIds
from telemetry.events import new_event_id
from telemetry.memory_bus import MemoryBus


async def test_same_key_same_partition_in_order() -> None:
    """A key always maps to one partition; offsets grow by one in publish order."""
    bus = MemoryBus(partitions=3)
    pub = bus.publisher()
    for i in range(30):
        await pub.publish("t", f"tenant{i % 4}", b"%d" % i)
    by_key: dict[bytes | None, set[int]] = {}
    for record in bus.records("t"):
        by_key.setdefault(record.key, set()).add(record.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    for index in range(3):
        offsets = [r.offset for r in bus.records("t") if r.partition == index]
        assert offsets == list(range(len(offsets)))
    assert sum(bus.end_offsets("t")) == 30


async def test_group_members_split_partitions_and_resume_from_commits() -> None:
    """Two members share the partitions; a member that leaves uncommitted records has them
    redelivered to the other."""
    bus = MemoryBus(partitions=4)
    pub = bus.publisher()
    for i in range(40):
        await pub.publish("t", f"k{i}", b"%d" % i)
    a, b = bus.subscribe(["t"], "g"), bus.subscribe(["t"], "g")
    await a.start()
    await b.start()
    assert a.assignment and b.assignment and not (a.assignment & b.assignment)
    got_a = await a.poll(0.1, 1000)
    await a.commit()
    got_b = await b.poll(0.1, 1000)  # polled, never committed: b "crashes"
    assert len(got_a) + len(got_b) == 40
    assert await b.lag() == 0
    await b.stop()
    redelivered = await a.poll(0.1, 1000)
    assert sorted(r.value for r in redelivered) == sorted(r.value for r in got_b)
    await a.commit()
    assert await a.lag() == 0
    await a.stop()


async def test_poll_wakes_on_publish_and_lag_counts_unread() -> None:
    """A waiting poll returns as soon as a record arrives; lag counts what is not polled."""
    bus = MemoryBus(partitions=2)
    sub = bus.subscribe(["t"], "g")
    await sub.start()
    waiter = asyncio.create_task(sub.poll(5.0))
    await asyncio.sleep(0.01)
    await bus.publisher().publish("t", "k", b"x")
    records = await asyncio.wait_for(waiter, 1.0)
    assert [r.value for r in records] == [b"x"]
    await bus.publisher().publish("t", "k", b"y")
    assert await sub.lag() == 1
    await sub.stop()


async def test_from_latest_skips_history() -> None:
    """A new group with from_beginning=False starts at the end."""
    bus = MemoryBus()
    await bus.publisher().publish("t", "k", b"old")
    sub = bus.subscribe(["t"], "g", from_beginning=False)
    await sub.start()
    assert await sub.poll(0.05) == []
    await bus.publisher().publish("t", "k", b"new")
    assert [r.value for r in await sub.poll(0.5)] == [b"new"]
    await sub.stop()


async def test_retention_keeps_what_groups_have_not_committed() -> None:
    """Records are trimmed only below every group's commit (and beyond the hard cap)."""
    bus = MemoryBus(partitions=1, retention_records=5000, keep_min=100)
    sub = bus.subscribe(["t"], "g")
    await sub.start()
    pub = bus.publisher()
    for i in range(3000):
        await pub.publish("t", "k", b"%d" % i)
    total = 0
    while batch := await sub.poll(0.01, 500):
        total += len(batch)
    assert total == 3000  # nothing trimmed before the group read it
    await sub.commit()
    for _ in range(1024):
        await pub.publish("t", "k", b"more")
    assert len(bus.records("t")) < 3000
    await sub.stop()


def test_seen_ids_window_is_bounded() -> None:
    """The dedupe window remembers recent ids and forgets old ones, bounded in size."""
    seen = SeenIds(window=100)
    for i in range(1000):
        seen.add(str(i))
    assert "999" in seen and "950" in seen and "0" not in seen
    assert len(seen) <= 100


def test_seen_ids_remember_exactly_the_last_window_ids() -> None:
    """After M > N events a window of N holds exactly the last N ids: the N-th from last
    is still a repeat, the one before it is forgotten, and ``len`` never passes N (nor
    counts the placeholders a fresh window starts with)."""
    window = 1000
    ids = [new_event_id() for _ in range(7 * window + 3)]
    seen = SeenIds(window=window)
    assert len(seen) == 0 and ids[0] not in seen
    for count, event_id in enumerate(ids, 1):
        seen.add(event_id)
        assert len(seen) == min(count, window)
    assert all(event_id in seen for event_id in ids[-window:])
    assert not any(event_id in seen for event_id in ids[:-window])
    seen.add(ids[-1])  # a repeat takes no new entry and pushes nothing out
    assert ids[-window] in seen and len(seen) == window
    with pytest.raises(ValueError, match="at least 1"):
        SeenIds(window=0)


def test_seen_ids_memory_is_taken_at_start_and_stays_flat() -> None:
    """A consumer's dedupe memory is at its steady state before the first event: a window
    of N takes its whole footprint (100 to 200 bytes an id) when it is made, and 5 N events
    later it holds no more than it did then — the soak's RSS does not grow while the
    window fills."""
    import tracemalloc

    window = 20_000
    tracemalloc.start()
    try:
        seen = SeenIds(window=window)
        footprint = tracemalloc.get_traced_memory()[0]
        readings = []
        for _ in range(5):
            for _ in range(window):
                seen.add(new_event_id())
            readings.append(tracemalloc.get_traced_memory()[0] - footprint)
    finally:
        tracemalloc.stop()
    assert 60 * window < footprint < 200 * window
    assert max(readings) < 0.02 * footprint, readings


def test_seen_ids_remember_minted_ids_compactly_and_exactly() -> None:
    """A minted id is remembered as its 128-bit integer, at least 30 bytes less than the
    same id kept as a string (a full default window is most of a consumer's steady
    memory), and the compact form never confuses two ids: spellings ``int(…, 16)`` would
    equate (``0x…``, capitals, ``_``, a space) stay distinct."""
    import tracemalloc

    ids = [new_event_id() for _ in range(50_000)]

    def held(spell: Callable[[str], str]) -> int:
        tracemalloc.start()
        try:
            seen = SeenIds(window=len(ids))  # its own footprint counts: taken at start
            for event_id in ids:  # each id decoded, remembered, its event dropped
                seen.add(spell(event_id))
            return tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()

    # capitals do not compact: the same window, the ids kept as strings
    assert held(str) < held(str.upper) - 30 * len(ids)
    minted = "00ab" + "0" * 28
    seen = SeenIds(window=100)
    seen.add(minted)
    assert minted in seen
    for twin in ("0x" + minted[2:], minted.upper(), "00_ab" + "0" * 27, " " + minted[1:]):
        assert len(twin) == 32 and twin not in seen, twin
        seen.add(twin)
        assert twin in seen
