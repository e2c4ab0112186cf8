"""PII redactor benchmark: per-type recall / precision and throughput, beside Presidio.

    python -m bench.pii [--corpus bench/pii_corpus.jsonl] [--no-presidio] [--min-seconds 1.0]

Matching is span level and the type must match. Two rules are printed:
``exact`` (same start and end) and ``overlap`` (intersection over union of the
two spans >= 0.5, one gold span per prediction). The quality bars apply to
``exact`` for our redactor; Presidio is shown under both, since its spans can
differ from ours by a prefix (e.g. ``+86``) without being wrong.

Throughput is on one core in this process, with the scanner ``make install``
builds (``native``, Rust) and, as a baseline in the same run, the Python
reference scanner it is tested against. Only the ``redact`` calls are
timed, the corpus is repeated until at least ``--min-seconds`` have passed, and
MB means 10**6 bytes of UTF-8 input. The figure is CPU time of this process
(``time.process_time``), so other load on the machine does not count against
it; wall-clock MB/s, the load average and a calibration (the time of
``int("5")``) are printed beside it so a reader can judge the machine. Two
shapes are timed: one call (and one fresh session) per corpus line, and the
lines joined into ~8 KB documents, one session each.

Presidio runs its pattern recognizers only: the NLP engine is
``spacy.blank("en")`` (no NER model), the analyzer is asked only for the
entities that map to ours, at its default score threshold (0). It has no
recognizer for CN_ID or SECRET; those cells show ``-``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import timeit
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.pii import EntityType, Redactor, python_scanner

TYPES = [t.value for t in EntityType]
PRESIDIO_MAP = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP",  # split into IPV4 / IPV6 by the text of the span
}
PRESIDIO_TYPES = {"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IPV4", "IPV6"}

Span3 = tuple[int, int, str]


@dataclass
class Tally:
    tp: int = 0
    fn: int = 0
    fp: int = 0

    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None


@dataclass
class Score:
    # rule -> lang ("all", "en", "zh") -> type -> tally
    tallies: dict[str, dict[str, dict[str, Tally]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(Tally)))
    )
    decoy_lines: int = 0
    decoy_lines_hit: int = 0
    misses: list[str] = field(default_factory=list)


def _iou(a: Span3, b: Span3) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def _match(gold: list[Span3], pred: list[Span3], exact: bool) -> tuple[set[int], set[int]]:
    """Indices of matched gold and predicted spans (each used at most once)."""
    used_g: set[int] = set()
    used_p: set[int] = set()
    for pi, p in enumerate(pred):
        for gi, g in enumerate(gold):
            if gi in used_g or g[2] != p[2]:
                continue
            if (g[0] == p[0] and g[1] == p[1]) if exact else _iou(g, p) >= 0.5:
                used_g.add(gi)
                used_p.add(pi)
                break
    return used_g, used_p


def score(
    rows: list[dict[str, object]], preds: list[list[Span3]], types: set[str] | None = None
) -> Score:
    sc = Score()
    for row, pred in zip(rows, preds, strict=True):
        text = str(row["text"])
        lang = str(row["lang"])
        gold = [(int(s["start"]), int(s["end"]), str(s["type"])) for s in row["spans"]]  # type: ignore[attr-defined]
        if types is not None:
            gold = [g for g in gold if g[2] in types]
        if not row["spans"]:
            sc.decoy_lines += 1
            sc.decoy_lines_hit += bool(pred)
        for rule in ("exact", "overlap"):
            mg, mp = _match(gold, pred, exact=rule == "exact")
            for lg in ("all", lang):
                t = sc.tallies[rule][lg]
                for gi, g in enumerate(gold):
                    if gi in mg:
                        t[g[2]].tp += 1
                    else:
                        t[g[2]].fn += 1
                for pi, p in enumerate(pred):
                    if pi not in mp:
                        t[p[2]].fp += 1
            if rule == "exact" and len(sc.misses) < 400:
                sc.misses += [f"  FN {g[2]:<11} {text[g[0]:g[1]]!r}  in {text!r}"
                              for gi, g in enumerate(gold) if gi not in mg]  # fmt: skip
                sc.misses += [f"  FP {p[2]:<11} {text[p[0]:p[1]]!r}  in {text!r}"
                              for pi, p in enumerate(pred) if pi not in mp]  # fmt: skip
    return sc


def _f(x: float | None) -> str:
    return "    -" if x is None else f"{x:5.3f}"


def print_table(title: str, scores: dict[str, Score], rule: str) -> None:
    names = list(scores)
    print(f"\n{title}  (matching: {rule}; R = recall, P = precision)")
    head = f"{'type':<12}" + "".join(f" | {n:^27}" for n in names)
    print(head)
    print(f"{'':<12}" + "".join(f" | {'R':>5} {'P':>5} {'R en':>5} {'R zh':>5} " for _ in names))
    print("-" * len(head))
    for typ in TYPES:
        cells = []
        for n in names:
            t = scores[n].tallies[rule]
            cells.append(
                f" | {_f(t['all'][typ].recall())} {_f(t['all'][typ].precision())} "
                f"{_f(t['en'][typ].recall())} {_f(t['zh'][typ].recall())} "
            )
        print(f"{typ:<12}" + "".join(cells))


def support(rows: Iterable[dict[str, object]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for s in row["spans"]:  # type: ignore[attr-defined]
            out[str(s["type"])][str(row["lang"])] += 1
    return out


@dataclass
class Rate:
    cpu: float  # MB/s of process CPU time
    wall: float  # MB/s of wall-clock time


def throughput(fn: Callable[[str], object], texts: list[str], min_seconds: float) -> Rate:
    """Run ``fn`` over ``texts`` repeatedly for at least ``min_seconds`` of CPU time."""
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    total_bytes = 0
    cpu = wall = 0.0
    while cpu < min_seconds:
        c0, w0 = time.process_time(), time.perf_counter()
        for t in texts:
            fn(t)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        total_bytes += nbytes
    return Rate(total_bytes / cpu / 1e6, total_bytes / wall / 1e6)


def calibration_ns() -> float:
    """Best-of-5 time of ``int("5")``: about 50-60 ns on an idle modern x86 core."""
    return min(timeit.repeat(lambda: int("5"), number=100_000, repeat=5)) / 100_000 * 1e9


def documents(texts: list[str], size: int = 8192) -> list[str]:
    docs: list[str] = []
    cur: list[str] = []
    n = 0
    for t in texts:
        cur.append(t)
        n += len(t.encode("utf-8")) + 1
        if n >= size:
            docs.append("\n".join(cur))
            cur, n = [], 0
    if cur:
        docs.append("\n".join(cur))
    return docs


def run_presidio(rows: list[dict[str, object]]) -> tuple[list[list[Span3]], float] | str:
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from tqdm import tqdm
    except ImportError as exc:
        return f"presidio-analyzer is not installed ({exc}); pip install '.[bench]'"
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.nlp = {"en": spacy.blank("en")}
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    entities = list(PRESIDIO_MAP)
    preds: list[list[Span3]] = []
    t0 = time.perf_counter()
    for row in tqdm(rows, desc="presidio", unit="line", file=sys.stderr):
        text = str(row["text"])
        found = []
        for r in analyzer.analyze(text=text, language="en", entities=entities):
            typ = PRESIDIO_MAP[r.entity_type]
            if typ == "IP":
                typ = "IPV6" if ":" in text[r.start : r.end] else "IPV4"
            found.append((r.start, r.end, typ))
        # Presidio may return overlapping results; keep the best-placed, longest first.
        found.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        kept: list[Span3] = []
        for s in found:
            if not kept or s[0] >= kept[-1][1]:
                kept.append(s)
        preds.append(kept)
    elapsed = time.perf_counter() - t0
    nbytes = sum(len(str(r["text"]).encode("utf-8")) for r in rows)
    return preds, nbytes / elapsed / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description="PII redactor recall, precision and throughput")
    ap.add_argument("--corpus", type=Path, default=Path(__file__).with_name("pii_corpus.jsonl"))
    ap.add_argument("--no-presidio", action="store_true", help="skip the Presidio comparison")
    ap.add_argument("--min-seconds", type=float, default=1.0, help="time each shape this long")
    ap.add_argument("--show-misses", action="store_true", help="list our exact-match FN / FP")
    args = ap.parse_args()

    rows = [json.loads(x) for x in args.corpus.read_text(encoding="utf-8").splitlines() if x]
    texts = [str(r["text"]) for r in rows]
    sup = support(rows)
    n_en = sum(r["lang"] == "en" for r in rows)
    print(f"corpus {args.corpus.name}: {len(rows)} lines ({n_en} en, {len(rows) - n_en} zh), "
          f"{sum(len(t.encode('utf-8')) for t in texts) / 1e3:.0f} KB, "
          f"{sum(not r['spans'] for r in rows)} decoy-only lines")  # fmt: skip
    print("gold spans per type (en/zh): "
          + ", ".join(f"{t} {sup[t]['en']}/{sup[t]['zh']}" for t in TYPES))  # fmt: skip

    redactor = Redactor()
    ours = [[(s.start, s.end, s.type.value) for s in redactor.find(t)] for t in texts]
    scores = {"ragward": score(rows, ours)}

    # Timed before Presidio runs: its spaCy objects would make this process's garbage
    # collections slower for whatever is timed after.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    calibration = calibration_ns()

    def redact_doc(doc: str) -> object:
        return redactor.session().redact(doc)

    docs = documents(texts)
    en = [t for t, r in zip(texts, rows, strict=True) if r["lang"] == "en"]
    zh = [t for t, r in zip(texts, rows, strict=True) if r["lang"] == "zh"]
    rates = {
        f"per line (avg {sum(len(t.encode()) for t in texts) / len(texts):.0f} bytes)":
            throughput(redactor.redact, texts, args.min_seconds),
        "  English lines": throughput(redactor.redact, en, args.min_seconds),
        "  Chinese lines": throughput(redactor.redact, zh, args.min_seconds),
        f"~8 KB documents ({len(docs)})": throughput(redact_doc, docs, args.min_seconds),
    }  # fmt: skip
    # Baseline in the same run: the same redactor on the Python reference scanner.
    base = throughput(Redactor(scanner=python_scanner()).redact, texts, args.min_seconds)

    presidio = None if args.no_presidio else run_presidio(rows)
    if isinstance(presidio, str):
        print(f"\nPresidio: not run: {presidio}")
    elif presidio is not None:
        scores["presidio"] = score(rows, presidio[0])

    print_table("Per-type results", scores, "exact")
    print_table("Per-type results", scores, "overlap")
    for name, sc in scores.items():
        print(f"\n{name}: decoy-only lines with any detection: "
              f"{sc.decoy_lines_hit}/{sc.decoy_lines}")  # fmt: skip

    bars = []
    t = scores["ragward"].tallies["exact"]
    for typ in TYPES:
        for lg in ("en", "zh"):
            r, p = t[lg][typ].recall(), t[lg][typ].precision()
            if r is not None and r < 0.98:
                bars.append(f"{typ} {lg} recall {r:.3f} < 0.98")
            if p is not None and p < 0.95:
                bars.append(f"{typ} {lg} precision {p:.3f} < 0.95")
    print("\nquality bar (exact, every type, en and zh: recall >= 0.98, precision >= 0.95): "
          + ("PASS" if not bars else "FAIL: " + "; ".join(bars)))  # fmt: skip

    print(f"\nThroughput, one core, only redaction timed (MB/s of CPU time; wall-clock after /). "
          f"Machine: load average {load:.1f} on {os.cpu_count()} CPUs, "
          f'int("5") takes {calibration:.0f} ns:')  # fmt: skip
    for label, rate in rates.items():
        print(f"  ragward  {label:<28} {rate.cpu:6.1f} / {rate.wall:5.1f} MB/s")
    per_line = next(iter(rates.values())).cpu
    print(f"  reference {'per line, Python scanner':<27} {base.cpu:6.1f} / {base.wall:5.1f} MB/s"
          f"   (this run's scanner: {redactor.engine}, {per_line / base.cpu:.1f}x the reference)")  # fmt: skip
    print(f"  throughput bar (>= 20 MB/s of CPU time, per line): "
          f"{'PASS' if per_line >= 20 else 'FAIL'} ({per_line:.1f})")  # fmt: skip
    if isinstance(presidio, tuple):
        print(f"  presidio per line, one pass (wall-clock):  {presidio[1]:8.3f} MB/s")

    if args.show_misses:
        print("\nour exact-match misses:")
        print("\n".join(scores["ragward"].misses))


if __name__ == "__main__":
    main()
