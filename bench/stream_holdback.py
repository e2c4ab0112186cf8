"""Stream redaction: how much text is held back behind the upstream, and its CPU per chunk.

For the answers of ``bench/pii_corpus.jsonl`` — PII-dense (texts with spans) and
PII-free (those without) — cut into chunks of ``--chunk-chars`` characters (or
words), every chunk is pushed through the stream redaction the gateway uses
(``RedactionSession.stream()``, or the stand-in of
``gateway/_stream_redaction_fallback.py`` while that is what is installed).
After each push it records ``held`` (characters received but not yet released),
and checks the two exactness properties on the way: no released prefix holds
raw PII that the whole-text redaction hides (approximated by the corpus's
spans: no span's text appears in what was released), and the released text
equals the whole-text redaction. Prints mean and max hold-back per class, and
microseconds of CPU per pushed chunk.

    .venv/bin/python bench/stream_holdback.py
    .venv/bin/python bench/stream_holdback.py --chunk-chars 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]


def chunks_of(text: str, size: int) -> list[str]:
    if size > 0:
        return [text[i : i + size] for i in range(0, len(text), size)]
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def main(argv: list[str] | None = None) -> int:
    from gateway._stream_redaction_fallback import HoldAll, stream_redaction
    from gateway.redaction import ENGINE, Redactor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunk-chars", type=int, default=0, help="0: one word per chunk")
    args = parser.parse_args(argv)
    redactor = Redactor()
    rows = [json.loads(line) for line in (BENCH / "pii_corpus.jsonl").open(encoding="utf-8")]
    report: dict[str, object] = {"engine": ENGINE, "chunk_chars": args.chunk_chars or "word"}
    for label, texts in (("pii_dense", [r for r in rows if r["spans"]]),
                         ("pii_free", [r for r in rows if not r["spans"]])):
        held: list[int] = []
        pushes, cpu, leaks, mismatches = 0, 0.0, 0, 0
        implementation = ""
        for row in texts:
            text = row["text"]
            session = redactor.session()
            stream = stream_redaction(session)
            implementation = "stand-in: holds all" if isinstance(stream, HoldAll) else "session"
            released = ""
            raw = [text[s["start"]:s["end"]] for s in row["spans"]]
            for chunk in chunks_of(text, args.chunk_chars):
                started = time.process_time()
                released += stream.push(chunk)
                cpu += time.process_time() - started
                pushes += 1
                held.append(stream.held)
                leaks += any(r and r in released for r in raw)
            started = time.process_time()
            released += stream.close()  # counted too: the stand-in does all its work here
            cpu += time.process_time() - started
            expected = redactor.session().redact(text, enforce_block=False).text
            mismatches += released != expected
        report[label] = {
            "answers": len(texts), "chunks": pushes,
            "held_chars_mean": round(sum(held) / len(held), 1) if held else 0,
            "held_chars_max": max(held, default=0),
            "cpu_us_per_chunk": round(cpu * 1e6 / pushes, 2) if pushes else 0,
            "prefixes_with_raw_pii": leaks, "final_text_mismatches": mismatches,
            "implementation": implementation,
        }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
