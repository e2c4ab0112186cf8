"""The local spool: where events wait, fsynced, while Kafka is unreachable.

Layout (one directory, owned by one process at a time through ``flock`` on
``LOCK``)::

    000000000001.spool   segments, appended in order, rotated at segment_bytes
    000000000002.spool
    cursor               "SEQ OFFSET": where the drain has got to

A segment is a sequence of frames::

    magic 0xA7 | length u32 | crc32(payload) u32 | payload
    payload = topic_len u16 | topic | key_len u16 | key | value

**Group commit.** :meth:`Spool.append` queues the frame and waits; one writer
task takes everything queued, writes it with one ``write`` and makes it
durable with one ``fdatasync`` (in a worker thread, so the event loop keeps
accepting appends meanwhile), then resolves every waiting append. A thousand
concurrent publishes cost a handful of fsyncs, not a thousand.

**Crash safety.** An append returns only after its fsync completed, so every
acknowledged frame precedes the last completed fsync. A crash (SIGKILL, power)
can leave a torn frame only after that point: on open, each segment is scanned
from the cursor, and at the first frame whose header is incomplete, whose
length overruns the file or whose CRC does not match, the segment is truncated.
Only unacknowledged bytes are dropped.

**Bounded.** :attr:`bytes_used` counts frames written or queued and not yet
drained; an append that would exceed ``max_bytes`` raises :class:`SpoolFull`.

The cursor file is replaced atomically (write + rename) after each drained
batch, without fsync: losing it (power loss) re-sends records that were
already delivered, which consumers remove by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

MAGIC = 0xA7
HEADER = struct.Struct(">BII")
MAX_FRAME = 16 * 1024 * 1024
_U16 = struct.Struct(">H")
_SUFFIX = ".spool"


class SpoolFull(Exception):
    """The spool has no room for this record."""


class SpoolBusy(RuntimeError):
    """Another process owns this spool directory."""


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    topic: str
    key: str
    value: bytes


Position = tuple[int, int]  # (segment sequence, byte offset)


def encode_frame(topic: str, key: str, value: bytes) -> bytes:
    t, k = topic.encode(), key.encode()
    payload = b"".join((_U16.pack(len(t)), t, _U16.pack(len(k)), k, value))
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> SpooledRecord:
    (tlen,) = _U16.unpack_from(payload, 0)
    topic = payload[2 : 2 + tlen].decode()
    (klen,) = _U16.unpack_from(payload, 2 + tlen)
    start = 4 + tlen
    key = payload[start : start + klen].decode()
    return SpooledRecord(topic, key, payload[start + klen :])


def scan_frames(data: bytes, offset: int = 0) -> tuple[list[tuple[int, bytes]], int]:
    """(end offset, payload) of each whole, valid frame from ``offset``; and where
    the valid prefix ends (a torn or corrupt frame starts there)."""
    frames: list[tuple[int, bytes]] = []
    size = len(data)
    while offset + HEADER.size <= size:
        magic, length, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if magic != MAGIC or length > MAX_FRAME or end > size:
            break
        payload = data[offset + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        frames.append((end, payload))
        offset = end
    return frames, offset


class Spool:
    """A bounded, crash-safe, append-only queue of records on local disk."""

    def __init__(
        self, directory: Path, max_bytes: int, *, segment_bytes: int | None = None
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(4096, min(64 * 1024 * 1024, max_bytes // 4))
        self._lock_fd: int | None = None
        self._fd: int | None = None  # active (last) segment, append-only
        self._active_seq = 0
        self._active_size = 0
        self._sizes: dict[int, int] = {}  # durable size of each live segment
        self._cursor: Position = (1, 0)
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._pending_bytes = 0
        self._writing_bytes = 0
        self._wakeup = asyncio.Event()
        self._data = asyncio.Event()  # set after every durable write (for the drain)
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.fsyncs = 0
        self.appends = 0
        self.dropped_torn_bytes = 0

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._open)
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name="spool-writer")

    async def stop(self) -> None:
        """Write what is queued, then release the files."""
        self._closing = True
        self._wakeup.set()
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        self._close_files()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SpoolBusy(f"spool {self.directory} is in use by another process") from None
        seqs = sorted(int(p.stem) for p in self.directory.glob("*" + _SUFFIX) if p.stem.isdigit())
        cursor = self._read_cursor()
        if cursor is not None and seqs and cursor[0] >= seqs[0]:
            self._cursor = cursor
        else:
            self._cursor = (seqs[0] if seqs else 1, 0)
        for seq in seqs:
            path = self._path(seq)
            if seq < self._cursor[0]:
                path.unlink(missing_ok=True)  # drained before the last stop
                continue
            data = path.read_bytes()
            start = self._cursor[1] if seq == self._cursor[0] else 0
            if start > len(data):
                start = len(data)
                self._cursor = (seq, start)
            _, valid_end = scan_frames(data, start)
            if valid_end < len(data):
                self.dropped_torn_bytes += len(data) - valid_end
                log.warning(
                    "spool.torn_tail_dropped", segment=path.name, offset=valid_end,
                    bytes=len(data) - valid_end,
                )
                with open(path, "r+b") as fh:
                    fh.truncate(valid_end)
                    os.fsync(fh.fileno())
            self._sizes[seq] = valid_end
        if self._cursor[0] not in self._sizes:
            self._cursor = (min(self._sizes) if self._sizes else self._cursor[0], 0)
        self._active_seq = max(self._sizes) if self._sizes else self._cursor[0]
        self._open_active()
        self._sizes[self._active_seq] = self._active_size
        if not self.is_empty:
            log.info("spool.recovered", bytes=self.bytes_used, segments=len(self._sizes))

    def _open_active(self) -> None:
        path = self._path(self._active_seq)
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._active_size = os.fstat(self._fd).st_size
        if created:
            self._fsync_dir()

    def _close_files(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- state ------------------------------------------------------------------
    @property
    def bytes_used(self) -> int:
        durable = sum(self._sizes.values()) - self._cursor[1]
        return durable + self._pending_bytes + self._writing_bytes

    @property
    def is_empty(self) -> bool:
        return self.bytes_used == 0

    @property
    def cursor(self) -> Position:
        return self._cursor

    # -- appending (group commit) -----------------------------------------------
    async def append(self, topic: str, key: str, value: bytes) -> None:
        """Return once the record is fsynced; raise SpoolFull when it does not fit."""
        frame = encode_frame(topic, key, value)
        if self.bytes_used + len(frame) > self.max_bytes:
            raise SpoolFull(f"spool full ({self.bytes_used} of {self.max_bytes} bytes)")
        if self._writer is None or self._closing:
            raise RuntimeError("spool is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((frame, future))
        self._pending_bytes += len(frame)
        self._wakeup.set()
        await future

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, self._pending = self._pending, []
            data = b"".join(frame for frame, _ in batch)
            self._writing_bytes, self._pending_bytes = len(data), self._pending_bytes - len(data)
            try:
                seq, size = await asyncio.to_thread(self._write_durably, data)
                self._sizes[seq] = size  # sizes are only touched on the loop's thread
            except OSError as exc:
                log.error("spool.write_failed", error=str(exc), records=len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                self.appends += len(batch)
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
            finally:
                self._writing_bytes = 0
            self._data.set()

    def _write_durably(self, data: bytes) -> tuple[int, int]:
        """Append and fdatasync (worker thread); return (segment, its durable size)."""
        if self._active_size >= self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fdatasync(self._fd)
        self.fsyncs += 1
        self._active_size += len(data)
        return self._active_seq, self._active_size

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._active_seq += 1
        self._open_active()

    # -- draining ---------------------------------------------------------------
    async def wait_for_data(self, wait_s: float) -> None:
        self._data.clear()
        if self._has_unread():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._data.wait()

    def _has_unread(self) -> bool:
        seq, off = self._cursor
        return any(size > (off if s == seq else 0) for s, size in self._sizes.items() if s >= seq)

    async def read_batch(
        self, max_records: int = 1000, max_bytes: int = 1 << 20
    ) -> tuple[list[SpooledRecord], Position]:
        """The next durable records from the cursor, and the position after them."""
        sizes = dict(self._sizes)
        return await asyncio.to_thread(self._read, sizes, max_records, max_bytes)

    def _read(
        self, sizes: dict[int, int], max_records: int, max_bytes: int
    ) -> tuple[list[SpooledRecord], Position]:
        seq, offset = self._cursor
        records: list[SpooledRecord] = []
        taken = 0
        while len(records) < max_records and taken < max_bytes:
            size = sizes.get(seq)
            if size is None:
                break
            if offset >= size:
                later = [s for s in sizes if s > seq]
                if not later:
                    break
                seq, offset = min(later), 0
                continue
            data = self._read_chunk(seq, offset, size, max(max_bytes - taken, 1 << 16))
            frames, _ = scan_frames(data)
            if not frames:  # durable bytes always hold whole frames; stop rather than spin
                log.error("spool.unreadable_frame", segment=seq, offset=offset)
                break
            previous = 0
            for end, payload in frames:
                records.append(decode_payload(payload))
                taken += end - previous
                previous = end
                if len(records) >= max_records or taken >= max_bytes:
                    break
            offset += previous
        return records, (seq, offset)

    def _read_chunk(self, seq: int, offset: int, size: int, want: int) -> bytes:
        with open(self._path(seq), "rb") as fh:
            fh.seek(offset)
            data = fh.read(min(size - offset, want))
            if len(data) >= HEADER.size:
                _, length, _ = HEADER.unpack_from(data, 0)
                whole = HEADER.size + length
                if whole > len(data) and offset + whole <= size:  # one frame bigger than want
                    data += fh.read(whole - len(data))
        return data

    async def advance(self, position: Position) -> None:
        """Mark everything before ``position`` delivered; delete drained segments."""
        self._cursor = position
        done = [s for s in self._sizes if s < position[0]]
        for seq in done:
            del self._sizes[seq]
        await asyncio.to_thread(self._persist_cursor, position, done)

    def _persist_cursor(self, position: Position, done: list[int]) -> None:
        tmp = self.directory / "cursor.tmp"
        tmp.write_text(f"{position[0]} {position[1]}\n")
        os.replace(tmp, self.directory / "cursor")
        for seq in done:
            self._path(seq).unlink(missing_ok=True)

    def _read_cursor(self) -> Position | None:
        try:
            seq, off = (self.directory / "cursor").read_text().split()
            return int(seq), int(off)
        except (FileNotFoundError, ValueError):
            return None

    # -- helpers ----------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{_SUFFIX}"

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
