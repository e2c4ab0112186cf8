"""``python -m rag_core.evaluate`` (``make eval``): retrieval quality on the bundled eval set.

Ingests the sample handbook into a temporary data directory with the local
backend, asks every question of ``rag_core/sample/eval.json`` through
:class:`~rag_core.service.RagService`, and prints hit@1, hit@3 and MRR (over
the top 10 sources, by source document) per language and overall. Exits 1
when hit@3 is below ``--min-hit3`` in any language.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rag_core.ingest import ingest
from rag_core.schemas import QueryRequest
from rag_core.service import build_service
from ragward.logs import configure_logging
from ragward.settings import load_settings

MRR_DEPTH = 10


def load_eval_set(path: Path | None = None) -> list[dict[str, str]]:
    if path is None:
        text = resources.files("rag_core").joinpath("sample", "eval.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    items: list[dict[str, str]] = json.loads(text)
    return items


@dataclass
class Scores:
    n: int = 0
    hit1: int = 0
    hit3: int = 0
    rr: float = 0.0
    misses: list[str] = field(default_factory=list)

    def add(self, ranked_files: list[str], expected: str, question: str) -> None:
        self.n += 1
        rank = ranked_files.index(expected) + 1 if expected in ranked_files else None
        self.hit1 += rank == 1
        self.hit3 += rank is not None and rank <= 3
        self.rr += 1.0 / rank if rank else 0.0
        if rank is None or rank > 3:
            self.misses.append(f"{question!r} -> {ranked_files[:3]} (expected {expected})")

    def row(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {"n": self.n, "hit@1": self.hit1 / n, "hit@3": self.hit3 / n, "mrr": self.rr / n}


def _dedupe(files: list[str]) -> list[str]:
    """Source documents in rank order (several chunks of one file count once)."""
    return list(dict.fromkeys(files))


async def evaluate(items: list[dict[str, str]], data_dir: Path) -> dict[str, Scores]:
    settings = load_settings(data_dir=data_dir, llm="local")
    ingest(settings, [], "eval", sample=True, show_progress=False)
    service = build_service(settings)
    await service.start()
    scores: dict[str, Scores] = {}
    try:
        for item in items:
            response = await service.query(
                QueryRequest(question=item["question"], top_k=MRR_DEPTH, index="eval"),
                tenant="eval",
                subject="eval",
                request_id="eval",
            )
            ranked = _dedupe([str(s.metadata.get("file_name", "")) for s in response.sources])
            for lang in (item["lang"], "all"):
                scores.setdefault(lang, Scores()).add(ranked, item["source"], item["question"])
    finally:
        await service.stop()
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag_core.evaluate", description=__doc__)
    parser.add_argument("--eval-set", type=Path, help="JSON list of {question, source, lang}")
    parser.add_argument("--min-hit3", type=float, default=0.9)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")
    items = load_eval_set(args.eval_set)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ragward-eval-") as tmp:
        scores = asyncio.run(evaluate(items, Path(tmp)))
    print(f"evaluation set: {len(items)} questions, local backend, sources ranked by document")
    print(f"{'lang':<5} {'n':>4} {'hit@1':>7} {'hit@3':>7} {'MRR':>7}")
    failed = False
    for lang in sorted(scores, key=lambda k: (k == "all", k)):
        row = scores[lang].row()
        print(
            f"{lang:<5} {row['n']:>4} {row['hit@1']:>7.3f} {row['hit@3']:>7.3f} "
            f"{row['mrr']:>7.3f}"
        )
        if lang != "all" and row["hit@3"] < args.min_hit3:
            failed = True
    if args.show_misses or failed:
        for lang, s in sorted(scores.items()):
            if lang != "all":
                for miss in s.misses:
                    print(f"  miss [{lang}] {miss}")
    print(f"took {time.perf_counter() - started:.1f}s")
    if failed:
        print(f"FAIL: hit@3 below {args.min_hit3} in some language", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
