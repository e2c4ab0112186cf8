"""What ``ragward ingest`` may read: files inside the given roots, within size limits.

Ingest reads trees it did not write (shared drives, uploads, checked-out
repositories), so a file is untrusted input:

* **Roots.** Every candidate is resolved (symlinks followed) and must still lie
  inside the resolved root it was found under. A symlink — to a file or to a
  directory — that leads out of the root is skipped and reported, never read.
  Directory symlinks are not descended into (their targets inside the root are
  walked anyway). A root named explicitly is the operator's choice and is used
  as it resolves.
* **Sizes.** A file over ``max_file_bytes`` is refused before it is opened by a
  reader; the text extracted from one file is capped at ``max_document_chars``
  (checked by :mod:`rag_core.readers` after extraction).
* **Archives.** docx, xlsx, pptx, epub and the OpenDocument formats are zip
  files: a few hundred kilobytes can inflate to gigabytes. Their central
  directory is read *before* anything is extracted, and the file is refused when
  it has more than ``max_archive_members`` members, declares more than
  ``max_archive_bytes`` uncompressed in total, or has a member over 1 MiB that
  inflates more than ``max_compression_ratio`` times. Python's ``zipfile`` never
  yields more than a member's declared size (it fails the CRC instead), so a
  directory that lies about sizes cannot get past these limits either.

Refusals raise :class:`FileRefused`, whose ``reason`` is one line naming the
limit and its setting; :func:`collect_files` reports what it skipped as
:class:`Skipped` entries instead of reading them.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ragward.settings import env_name

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})
# Office Open XML, EPUB and OpenDocument are zip containers; whichever of them a
# reader supports is checked as an archive before extraction.
ZIP_SUFFIXES = frozenset({".docx", ".xlsx", ".pptx", ".epub", ".odt", ".ods", ".odp"})
# Below this a member's ratio says little (a 40 KiB run of spaces compresses 1000x).
RATIO_GRACE_BYTES = 1 << 20


class FileRefused(Exception):
    """One file may not be read; ``reason`` is a single line for the operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file ingest did not read, and why (one line)."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_file_bytes: int
    max_document_chars: int
    max_archive_bytes: int
    max_archive_members: int
    max_compression_ratio: float


def over_limit(what: str, value: float, limit: float, setting: str) -> FileRefused:
    return FileRefused(f"{what} {value:,.0f} exceeds the limit {limit:,.0f} ({env_name(setting)})")


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[Skipped]]:
    """Supported files under ``paths`` (directories recursively, hidden entries left
    out), sorted and de-duplicated, and the entries skipped because they lead outside
    their root.

    Raises ValueError naming a path that does not exist or a file of an
    unsupported type given explicitly.
    """
    found: dict[Path, None] = {}
    skipped: list[Skipped] = []
    for path in paths:
        if path.is_dir():
            files, outside = _walk(path)
            found.update(dict.fromkeys(files))
            skipped.extend(outside)
        elif path.is_file():
            if not _supported(path):
                raise ValueError(
                    f"{path}: unsupported file type (supported: "
                    f"{', '.join(sorted(SUPPORTED_SUFFIXES))})"
                )
            target = path.resolve()
            if target.is_relative_to(path.absolute().parent.resolve()):
                found[target] = None
            else:
                skipped.append(Skipped(path, "symlink leads outside the ingest root"))
        else:
            raise ValueError(f"{path}: no such file or directory")
    return list(found), skipped


def _resolved(path: Path) -> Path | None:
    """The real path, or None for a symlink loop (which ``resolve`` raises on)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return None


def _walk(root: Path) -> tuple[list[Path], list[Skipped]]:
    real_root = root.resolve()
    files: list[Path] = []
    skipped: list[Skipped] = []
    for directory, subdirs, names in os.walk(root):  # does not follow directory symlinks
        here = Path(directory)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in subdirs:
            link = here / name
            if not link.is_symlink():
                continue
            target = _resolved(link)
            if target is None or not target.is_relative_to(real_root):
                skipped.append(Skipped(link, "directory symlink leads outside the ingest root"))
        for name in sorted(names):
            entry = here / name
            if name.startswith(".") or not _supported(entry):
                continue
            target = _resolved(entry)
            if target is None:
                skipped.append(Skipped(entry, "symlink loop"))
            elif not target.is_relative_to(real_root):
                skipped.append(Skipped(entry, "symlink leads outside the ingest root"))
            elif target.is_file():  # not a dangling link, a FIFO or a device
                files.append(target)
    return sorted(files), skipped


def check_file(path: Path, limits: IngestLimits) -> None:
    """Refuse ``path`` if it is too large, or an archive that would inflate too far.

    Reads only the file's size and, for zip containers, the central directory.
    """
    if path.is_symlink():  # collected resolved: it was replaced by a link since
        raise FileRefused("became a symlink after it was collected")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise over_limit("file size", size, limits.max_file_bytes, "ingest_max_file_bytes")
    if path.suffix.lower() in ZIP_SUFFIXES:
        _check_archive(path, limits)


def _check_archive(path: Path, limits: IngestLimits) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FileRefused(f"not a valid zip container: {exc}") from None
    if len(members) > limits.max_archive_members:
        raise over_limit("archive member count", len(members), limits.max_archive_members,
                    "ingest_max_archive_members")
    total = sum(m.file_size for m in members)
    if total > limits.max_archive_bytes:
        raise over_limit("uncompressed archive size", total, limits.max_archive_bytes,
                    "ingest_max_archive_bytes")
    for member in members:
        if member.file_size > RATIO_GRACE_BYTES:
            ratio = member.file_size / max(1, member.compress_size)
            if ratio > limits.max_compression_ratio:
                raise FileRefused(
                    f"archive member {member.filename!r} inflates {ratio:,.0f}x, over the "
                    f"limit {limits.max_compression_ratio:,.0f}x "
                    f"({env_name('ingest_max_compression_ratio')})"
                )
