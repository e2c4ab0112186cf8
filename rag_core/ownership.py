"""Who may query an index: its owning tenant, or every tenant when it is shared.

``ragward ingest PATH --index NAME --tenant T`` records ``T`` as the owner in the
version's manifest; ``--shared`` (and ``--sample``, the bundled public handbook)
records a shared index. Index names are global, so an index keeps its owner
across re-ingests: publishing under another owner is refused (the operator
removes the index first). A manifest written before ownership was recorded is
shared, as every index was then; rag_core logs ``index_owner_unrecorded`` for it.

rag_core applies :meth:`Ownership.visible_to` on every query and listing: another
tenant's index answers exactly like a missing one, so names do not leak. The
gateway's allow-lists can only narrow this further.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag_core.store import read_current, read_manifest, version_dir


@dataclass(frozen=True, slots=True)
class Ownership:
    owner: str | None  # None: shared by every tenant

    @classmethod
    def shared(cls) -> Ownership:
        return cls(None)

    @property
    def is_shared(self) -> bool:
        return self.owner is None

    def visible_to(self, tenant: str | None) -> bool:
        """May ``tenant`` use the index? None is the trusted internal caller (no
        ``X-Tenant``), which sees every index."""
        return tenant is None or self.owner is None or self.owner == tenant

    def manifest_fields(self) -> dict[str, Any]:
        return {"owner": self.owner, "shared": self.owner is None}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> tuple[Ownership, bool]:
        """(ownership, recorded): a manifest without the fields is shared, not recorded."""
        if "shared" not in manifest:
            return cls.shared(), False
        owner = manifest.get("owner")
        if manifest.get("shared") is True or not isinstance(owner, str) or not owner:
            return cls.shared(), True
        return cls(owner), True

    def describe(self) -> str:
        return "shared" if self.owner is None else f"owned by tenant '{self.owner}'"


def current_ownership(root: Path, name: str) -> Ownership | None:
    """The ownership of the index's current version; None when it does not exist."""
    version = read_current(root, name)
    if version is None:
        return None
    try:
        manifest = read_manifest(version_dir(root, name, version))
    except FileNotFoundError:
        return None
    return Ownership.from_manifest(manifest)[0]


def check_reingest(root: Path, name: str, ownership: Ownership) -> None:
    """Refuse (ValueError) to publish ``name`` under another owner than it has."""
    existing = current_ownership(root, name)
    if existing is not None and existing != ownership:
        raise ValueError(
            f"index {name!r} is {existing.describe()}; it cannot become "
            f"{ownership.describe()} (remove {root / name} first to start it anew)"
        )
