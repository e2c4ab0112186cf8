"""The spool on a real file system: group commit, torn-tail recovery, cursor, bounds."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from telemetry.spool import HEADER, Spool, SpoolBusy, SpoolFull, encode_frame


async def drain_all(spool: Spool) -> list[tuple[str, str, bytes]]:
    out = []
    while True:
        records, position = await spool.read_batch(max_records=7)
        if not records:
            return out
        out.extend((r.topic, r.key, r.value) for r in records)
        await spool.advance(position)


async def test_concurrent_appends_share_fsyncs(tmp_path: Path) -> None:
    """500 concurrent appends are made durable by far fewer fsyncs (group commit)."""
    spool = Spool(tmp_path / "spool", 1 << 24)
    await spool.start()
    try:
        await asyncio.gather(*(spool.append("t", f"k{i % 5}", b"v%d" % i) for i in range(500)))
        assert spool.appends == 500
        assert spool.fsyncs < 50, spool.fsyncs
        records = await drain_all(spool)
        assert [v for _, _, v in records] == [b"v%d" % i for i in range(500)]
        assert spool.is_empty and spool.bytes_used == 0
    finally:
        await spool.stop()


async def test_records_survive_reopen_in_order_from_the_cursor(tmp_path: Path) -> None:
    """After a stop, a new Spool on the same directory resumes after the drained part."""
    directory = tmp_path / "spool"
    spool = Spool(directory, 1 << 20, segment_bytes=4096)
    await spool.start()
    for i in range(300):  # several segments
        await spool.append("audit", "acme", b"x" * 40 + b"%d" % i)
    first, position = await spool.read_batch(max_records=100)
    assert len(first) == 100
    await spool.advance(position)
    await spool.stop()
    assert len(list(directory.glob("*.spool"))) > 1

    again = Spool(directory, 1 << 20, segment_bytes=4096)
    await again.start()
    try:
        rest = await drain_all(again)
        assert [v for _, _, v in rest] == [b"x" * 40 + b"%d" % i for i in range(100, 300)]
        assert len(list(directory.glob("*.spool"))) == 1  # drained segments deleted
    finally:
        await again.stop()


@pytest.mark.parametrize("damage", ["partial_header", "partial_payload", "bad_crc"])
async def test_torn_tail_is_detected_and_dropped(tmp_path: Path, damage: str) -> None:
    """A frame torn by a crash (short header, short payload, bad CRC) is cut off on open;
    every whole frame before it is kept."""
    directory = tmp_path / "spool"
    spool = Spool(directory, 1 << 20)
    await spool.start()
    for i in range(10):
        await spool.append("audit", "acme", b"event-%d" % i)
    await spool.stop()
    [segment] = directory.glob("*.spool")
    frame = encode_frame("audit", "acme", b"torn-event")
    with open(segment, "ab") as fh:
        if damage == "partial_header":
            fh.write(frame[: HEADER.size - 3])
        elif damage == "partial_payload":
            fh.write(frame[:-4])
        else:
            fh.write(frame[:-1] + bytes([frame[-1] ^ 0xFF]))
    again = Spool(directory, 1 << 20)
    await again.start()
    try:
        assert again.dropped_torn_bytes > 0
        values = [v for _, _, v in await drain_all(again)]
        assert values == [b"event-%d" % i for i in range(10)]
        await again.append("audit", "acme", b"after")  # appends go after the cut
        assert [v for _, _, v in await drain_all(again)] == [b"after"]
    finally:
        await again.stop()


async def test_full_spool_refuses_and_frees_space_when_drained(tmp_path: Path) -> None:
    """An append beyond max_bytes raises SpoolFull; draining makes room again."""
    spool = Spool(tmp_path / "spool", 4096)
    await spool.start()
    try:
        with pytest.raises(SpoolFull):
            for _ in range(1000):
                await spool.append("t", "k", b"y" * 100)
        assert spool.bytes_used <= 4096
        await drain_all(spool)
        await spool.append("t", "k", b"y" * 100)
    finally:
        await spool.stop()


async def test_one_owner_per_directory(tmp_path: Path) -> None:
    """A second Spool on a directory in use fails instead of interleaving writes."""
    first = Spool(tmp_path / "spool", 1 << 20)
    await first.start()
    try:
        with pytest.raises(SpoolBusy):
            await Spool(tmp_path / "spool", 1 << 20).start()
    finally:
        await first.stop()
    second = Spool(tmp_path / "spool", 1 << 20)
    await second.start()
    await second.stop()


async def test_acknowledged_appends_are_on_disk(tmp_path: Path) -> None:
    """When append returns, the frame's bytes are in the segment file (written and synced)."""
    spool = Spool(tmp_path / "spool", 1 << 20)
    await spool.start()
    try:
        await spool.append("audit", "acme", b"durable")
        [segment] = (tmp_path / "spool").glob("*.spool")
        assert os.path.getsize(segment) == len(encode_frame("audit", "acme", b"durable"))
        assert b"durable" in segment.read_bytes()
    finally:
        await spool.stop()
