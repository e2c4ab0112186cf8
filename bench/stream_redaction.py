"""Streamed redaction: characters held back, and CPU per chunk, beside fixed windows.

    python -m bench.stream_redaction [--answers 300] [--seed 1]

Answers are streamed in the pieces an LLM sends (1-8 characters, about 4 on
average, the size of a token), through ``RedactionSession.stream()`` on the native
scanner and on the Python reference. Two kinds of answers:

- PII-free: English and Chinese prose (Faker sentences), no entity at all;
- PII-dense: lines of the labelled corpus (``bench/pii_corpus.jsonl``: every entity
  type, decoys, both languages), several per answer.

"Held" is measured after every push: raw characters received and not yet sent
(``StreamRedaction.held``); mean, p99 and max over all pushes. "Outside entities"
counts only the held characters that are in no entity of the whole text: the
part of the hold that is not the entity still being written. CPU per chunk is
process time over the pushes and closes, divided by the number of chunks.

The baseline is a fixed window: send everything but the last N characters, never
cutting inside an entity of the text seen so far. It is printed for several N with
its hold-back and the number of answers it got wrong: a window shorter than an
entity plus its right context sends a prefix that later text changes (a secret or
an e-mail longer than N, or a number that grows), so it is exact only when N is at
least the longest entity; and it delays every token by N. Every answer of the
pattern-derived stream is checked against the whole-text redaction as well.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from faker import Faker

from gateway.pii import Redactor, python_scanner

CORPUS = Path(__file__).with_name("pii_corpus.jsonl")


def chunks(text: str, rng: random.Random) -> list[str]:
    out = []
    i = 0
    while i < len(text):
        n = rng.randint(1, 8)
        out.append(text[i : i + n])
        i += n
    return out


def pii_free(n: int, rng: random.Random) -> list[str]:
    en, zh = Faker("en_US"), Faker("zh_CN")
    en.seed_instance(rng.random())
    zh.seed_instance(rng.random())
    return [
        (en.paragraph(nb_sentences=6) if i % 2 == 0 else zh.paragraph(nb_sentences=6))
        for i in range(n)
    ]


def pii_dense(n: int, rng: random.Random) -> list[str]:
    lines = [json.loads(x)["text"] for x in CORPUS.read_text("utf-8").splitlines() if x]
    return [" ".join(rng.sample(lines, 4)) for _ in range(n)]


class Stats:
    def __init__(self) -> None:
        self.held: list[int] = []
        self.beyond: list[int] = []  # held characters outside the entities of the text
        self.chunks = 0
        self.cpu = 0.0
        self.wrong = 0

    def line(self, label: str) -> str:
        held = sorted(self.held)
        p99 = held[int(0.99 * (len(held) - 1))]
        beyond = (
            f"  outside entities mean {statistics.fmean(self.beyond):5.1f} max {max(self.beyond):4d}"
            if self.beyond
            else ""
        )
        return (
            f"  {label:<26} held mean {statistics.fmean(held):6.1f}  p99 {p99:4d}  "
            f"max {held[-1]:4d}{beyond}   CPU/chunk {self.cpu / self.chunks * 1e3:7.4f} ms"
            f"   wrong answers {self.wrong}"
        )


def run_stream(answers: list[list[str]], redactor: Redactor) -> Stats:
    stats = Stats()
    for pieces in answers:
        text = "".join(pieces)
        whole = redactor.session().redact(text, enforce_block=False).text
        stream = redactor.session().stream()
        sent = []
        held = []
        c0 = time.process_time()
        for piece in pieces:
            sent.append(stream.push(piece))
            held.append(stream.held)
        sent.append(stream.close())
        stats.cpu += time.process_time() - c0
        stats.held += held
        stats.chunks += len(pieces)
        stats.wrong += "".join(sent) != whole
        # What is held beyond the entity being written, which no exact stream can send.
        inside = [False] * len(text)
        for span in redactor.find(text):
            inside[span.start : span.end] = [True] * (span.end - span.start)
        received = 0
        for piece, n in zip(pieces, held, strict=True):
            received += len(piece)
            stats.beyond.append(sum(not x for x in inside[received - n : received]))
    return stats


def run_window(answers: list[list[str]], redactor: Redactor, window: int) -> Stats:
    """Fixed window: send all but the last ``window`` characters, not cutting a hit of
    the text seen so far (redetected whole at every push: its CPU is not comparable)."""
    stats = Stats()
    for pieces in answers:
        text = "".join(pieces)
        whole = redactor.session().redact(text, enforce_block=False).text
        seen = ""
        sent_raw = 0  # characters of ``seen`` sent
        out = ""  # what was sent: each push sends what extends it
        wrong = False
        c0 = time.process_time()
        for i, piece in enumerate([*pieces, ""]):
            seen += piece
            last = i == len(pieces)
            cut = len(seen) if last else max(sent_raw, len(seen) - window)
            spans = redactor.find(seen)
            for span in spans:
                if span.start < cut < span.end:
                    cut = span.start
            if cut > sent_raw:
                now = redactor.session().redact(seen[:cut], enforce_block=False).text
                wrong = wrong or not now.startswith(out)  # it takes back what was sent
                out = now
                sent_raw = cut
            if not last:
                stats.held.append(len(seen) - sent_raw)
        stats.cpu += time.process_time() - c0
        stats.chunks += len(pieces)
        stats.wrong += wrong or out != whole
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=int, default=300, help="answers of each kind")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    redactor = Redactor()
    kinds = {
        "PII-free prose (en, zh)": pii_free(args.answers, rng),
        "PII-dense (corpus lines)": pii_dense(args.answers, rng),
    }
    for kind, texts in kinds.items():
        answers = [chunks(t, rng) for t in texts]
        n_chunks = sum(map(len, answers))
        chars = sum(map(len, texts))
        print(f"\n{kind}: {len(texts)} answers, {chars} characters, {n_chunks} chunks "
              f"(mean {chars / n_chunks:.1f} characters)")  # fmt: skip
        print(run_stream(answers, redactor).line(f"stream ({redactor.engine})"))
        reference = run_stream(answers, Redactor(scanner=python_scanner()))
        print(reference.line("stream (python reference)"))
        for window in (16, 32, 64, 128):
            print(run_window(answers, redactor, window).line(f"fixed window {window}"))


if __name__ == "__main__":
    main()
