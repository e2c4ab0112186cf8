"""Print which packages moved between two uv.lock files, and by how much.

``make upgrade`` runs it after ``uv lock --upgrade`` so an upgrade is a reviewed
step: one line per package that was added, removed or changed version, with the
size of the move (major, minor, patch) in the terms of the version scheme.

    python deploy/lock_report.py OLD_LOCK NEW_LOCK
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.version import InvalidVersion, Version


def versions(lock: Path) -> dict[str, str]:
    packages = tomllib.loads(lock.read_text(encoding="utf-8")).get("package", [])
    return {p["name"]: p["version"] for p in packages if "version" in p}


def size_of_move(old: str, new: str) -> str:
    try:
        a, b = Version(old), Version(new)
    except InvalidVersion:
        return "changed"
    direction = "downgrade" if b < a else "upgrade"
    for part, name in zip(range(3), ("major", "minor", "patch"), strict=True):
        if (*a.release, 0, 0, 0)[part] != (*b.release, 0, 0, 0)[part]:
            # 0.x releases break on the minor number, as semver says for them
            if name == "minor" and a.release[0] == 0:
                name = "minor (breaking in 0.x)"
            return f"{name} {direction}"
    return f"pre/post-release {direction}"


def report(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            lines.append(f"  + {name} {after} (added)")
        elif after is None:
            lines.append(f"  - {name} {before} (removed)")
        else:
            lines.append(f"  ~ {name} {before} -> {after} ({size_of_move(before, after)})")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: lock_report.py OLD_LOCK NEW_LOCK", file=sys.stderr)
        return 2
    old, new = (versions(Path(a)) for a in argv)
    lines = report(old, new)
    print(f"uv.lock: {len(lines)} of {len(new)} packages moved")
    nothing = "  (nothing moved: every package is at its newest allowed version)"
    print("\n".join(lines) if lines else nothing)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
