"""``ragward ingest PATH... [--index NAME] (--tenant T | --shared) [--sample]``: build
and publish an index (:mod:`rag_core.ingest`), or ``--delete`` one.

The index belongs to tenant ``T``, or is shared by every tenant
(:mod:`rag_core.ownership`); the command asks for one of the two, except that
``--sample`` alone (the bundled public handbook) is shared. A file that cannot
be read is skipped with a one-line reason and the rest is ingested; the command
then exits 3 and lists what it skipped. ``--fail-fast`` stops at the first such
file, publishing nothing.
"""

from __future__ import annotations

import argparse
import sys

from rag_core.configuration import ingest_config
from rag_core.guard import Skipped, collect_files
from rag_core.ingest import FilesSkipped, delete, ingest
from rag_core.ownership import Ownership
from ragward.errors import NotFound, RagwardError
from ragward.identity import MAX_TENANT_CHARS, is_identity
from ragward.settings import Settings

SKIPPED_EXIT = 3


def main(settings: Settings, args: argparse.Namespace) -> int:
    """CLI entry: exit 0 on success, 2 on bad input, 1 when a dependency (the embedding
    provider, the vector store) fails — one line naming it, nothing published or deleted
    — and 3 when files were skipped (the rest is published unless ``--fail-fast``)."""
    tenant, shared = getattr(args, "tenant", None), bool(getattr(args, "shared", False))
    sample = bool(getattr(args, "sample", False))
    try:
        if tenant is not None and not is_identity(tenant, MAX_TENANT_CHARS):
            raise ValueError(f"--tenant must be 1-{MAX_TENANT_CHARS} printable characters, "
                             "like a token's tenant")
        if getattr(args, "delete", False):
            return _delete_main(settings, args.index, tenant, shared)
        if tenant is None and not shared and args.paths:
            collect_files(list(args.paths))  # a wrong path is the first thing to hear about
            raise ValueError("say whose documents these are: --tenant T (only tenant T may "
                             "query the index) or --shared (every tenant may)")
        result = ingest(
            ingest_config(settings),
            list(args.paths or []),
            args.index,
            sample=sample,
            owner=tenant,
            show_progress=True,
            fail_fast=bool(getattr(args, "fail_fast", False)),
            store=getattr(args, "store", None),
        )
    except ValueError as exc:
        print(f"ragward ingest: {exc}", file=sys.stderr)
        return 2
    except RagwardError as exc:
        print(f"ragward ingest: {exc.message}", file=sys.stderr)
        return 1
    except FilesSkipped as exc:
        _print_skipped(exc.skipped)
        print(f"ragward ingest: {exc.why}; nothing published", file=sys.stderr)
        return SKIPPED_EXIT
    print(
        f"ingested {result.documents} documents ({result.chunks} chunks) into index "
        f"'{result.index}' ({Ownership(tenant).describe()}) version {result.version} "
        f"in {result.seconds:.2f}s"
        + (f"; skipped {len(result.skipped)} files" if result.skipped else "")
    )
    if result.skipped:
        _print_skipped(list(result.skipped))
        return SKIPPED_EXIT
    return 0


def _delete_main(settings: Settings, index: str | None, tenant: str | None,
                 shared: bool) -> int:
    """``ragward ingest --delete --index NAME (--tenant T | --shared)``."""
    if not index or (tenant is None and not shared):
        raise ValueError("--delete needs --index NAME and whose it is: --tenant T or --shared")
    try:
        removed = delete(ingest_config(settings), index, owner=tenant)
    except NotFound as exc:
        print(f"ragward ingest: {exc.message}", file=sys.stderr)
        return 2
    print(f"deleted index '{index}' and its vectors ({len(removed)} version(s))")
    return 0


def _print_skipped(skipped: list[Skipped]) -> None:
    """One line per skipped file: its path and why, never a traceback."""
    for entry in skipped:
        print(f"ragward ingest: skipped {entry.path}: {entry.reason}", file=sys.stderr)
