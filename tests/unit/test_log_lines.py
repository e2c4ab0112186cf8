"""Log lines stay whole when threads log at once (ragward.logs).

A collector splits stderr on newlines and parses each line as JSON; a line from a
library's thread landing inside one of ours breaks two records at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_LINES_PER_THREAD = 2000

_PROBE = textwrap.dedent(
    """
    import logging, sys, threading
    import structlog
    from ragward.logs import configure_logging

    configure_logging("json", "info")
    count = int(sys.argv[1])

    def ours(thread):
        log = structlog.get_logger("ragward.probe")
        for i in range(count):
            log.info("ours", thread=thread, i=i, pad="a" * 150)

    def theirs(thread):
        library = logging.getLogger("some.library")
        for i in range(count):
            library.warning("theirs %s %s %s", thread, i, "b" * 150)

    threads = [threading.Thread(target=f, args=(k,)) for k in range(3) for f in (ours, theirs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


def test_structlog_and_library_lines_from_many_threads_never_interleave() -> None:
    """Six threads, ours and a library's, each line parses on its own and none is lost.

    Fails when structlog and the standard-library handler write under separate locks
    (hundreds of broken lines out of 12,000 before the fix).
    """
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(_LINES_PER_THREAD)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    lines = done.stderr.splitlines()
    records = []
    broken = 0
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            broken += 1
    assert broken == 0, f"{broken} of {len(lines)} lines are not whole JSON"
    ours = [r for r in records if r["event"] == "ours"]
    theirs = [r for r in records if r["event"].startswith("theirs ")]
    assert len(ours) == len(theirs) == 3 * _LINES_PER_THREAD
    assert {r["logger"] for r in theirs} == {"some.library"}
    assert all(r["level"] == "info" for r in ours)
