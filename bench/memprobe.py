"""Run a ``ragward`` command and let SIGUSR1 write a reading of its memory.

``python -m bench.memprobe DIR [--trace] consumer audit`` is ``ragward consumer audit``
(same code, same process) with a SIGUSR1 handler; each signal writes into ``DIR``:

* ``NNN.json`` — where the resident memory is, as the process itself accounts for
  it: blocks Python's allocator hands out (``sys.getallocatedblocks``), the bytes
  SQLite's own allocator holds (its page cache: ``sqlite3_memory_used``) and glibc's
  heap (``mallinfo2``: in use vs freed but kept) — so RSS growth splits into Python
  objects, SQLite and the allocator. Cheap: ``bench.soak`` always takes these.
* with ``--trace`` (``bench.soak --trace-memory``, for finding *why* something grows):
  :mod:`tracemalloc` runs from the start, and each reading also writes the snapshot
  (``NNN.tracemalloc``) and Python objects by type, for :func:`diff` to compare two
  readings line by line. Tracing costs CPU and memory of its own: the soak's RSS
  targets are judged on runs without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

FRAMES = 4


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _native() -> dict[str, float]:
    """SQLite's and glibc's own accounting, in MB (absent where the call is missing)."""
    out: dict[str, float] = {}
    import sqlite3  # noqa: F401  (loads the library the process uses)

    name = ctypes.util.find_library("sqlite3")
    if name:
        lib = ctypes.CDLL(name)
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        out["sqlite_mb"] = lib.sqlite3_memory_used() / 1e6
    libc = ctypes.CDLL(None)
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        out["malloc_in_use_mb"] = (info.uordblks + info.hblkhd) / 1e6
        out["malloc_free_kept_mb"] = info.fordblks / 1e6
    return out


def reading(directory: Path, number: int) -> None:
    """Write reading ``number`` into ``directory`` (the snapshot too while tracing)."""
    figures: dict[str, Any] = {"py_blocks_k": sys.getallocatedblocks() / 1e3, **_native()}
    if tracemalloc.is_tracing():
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        snapshot.dump(str(directory / f"{number:03d}.tracemalloc"))
        traced, peak = tracemalloc.get_traced_memory()
        figures |= {"traced_mb": traced / 1e6, "peak_mb": peak / 1e6, "objects": dict(
            Counter(type(o).__name__ for o in gc.get_objects()).most_common(25))}
    (directory / f"{number:03d}.json").write_text(json.dumps(figures))


def diff(directory: Path, first: int, last: int, top: int = 12) -> list[str]:
    """What grew between readings ``first`` and ``last``: the side figures, then the
    source lines (with their callers) that hold the most new memory."""
    a = json.loads((directory / f"{first:03d}.json").read_text())
    b = json.loads((directory / f"{last:03d}.json").read_text())
    lines = ["  " + "  ".join(f"{k} {a[k]:.1f} -> {b[k]:.1f}" for k in a
                              if k != "objects" and k in b)]
    grown = {t: b["objects"].get(t, 0) - a["objects"].get(t, 0) for t in b["objects"]}
    lines.append("  objects grown: " + ", ".join(
        f"{t} {n:+d}" for t, n in sorted(grown.items(), key=lambda x: -x[1])[:8] if n))
    old = tracemalloc.Snapshot.load(str(directory / f"{first:03d}.tracemalloc"))
    new = tracemalloc.Snapshot.load(str(directory / f"{last:03d}.tracemalloc"))
    for stat in new.compare_to(old, "traceback")[:top]:
        if stat.size_diff <= 0:
            continue
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback)
        lines.append(f"  {stat.size_diff / 1e6:+8.2f} MB {stat.count_diff:+9d} blocks  {where}")
    return lines


def main(argv: list[str]) -> int:
    directory, command = Path(argv[0]), argv[1:]
    directory.mkdir(parents=True, exist_ok=True)
    if command[:1] == ["--trace"]:
        command = command[1:]
        tracemalloc.start(FRAMES)
    taken = [0]

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        taken[0] += 1
        reading(directory, taken[0])

    signal.signal(signal.SIGUSR1, on_signal)
    from ragward.cli import main as ragward_main

    result: Any = ragward_main(command)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
