"""Where outputs go: mirror naming (CONTRACT.md), collision suffixes, and the OUT boundary."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .discovery import Found

#: Extensions stripped from input names; any other name is kept whole (`1.2.3` → `1.2.3.png`).
STRIPPED_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})


def mirror_base(found: Found) -> PurePosixPath:
    """The output path, relative to OUT and without extension, that mirrors an input."""
    rel = found.path.relative_to(found.root) if found.root else PurePosixPath(found.path.name)
    rel = PurePosixPath(*Path(rel).parts)
    if rel.suffix.lower() in STRIPPED_SUFFIXES:
        rel = rel.with_suffix("")
    return rel


class NameRegistry:
    """Hands out output bases so that two inputs never write to one name.

    A base claims its own name and everything below it (multi-frame stills go in a folder
    named after the base), compared case-insensitively so the result survives a copy to a
    case-insensitive file system. A later claim that overlaps gets `_2`, `_3`, ... .
    """

    def __init__(self) -> None:
        self._bases: set[str] = set()
        self._prefixes: set[str] = set()

    def _taken(self, key: str) -> bool:
        if key in self._bases or key in self._prefixes:
            return True
        parts = key.split("/")
        return any("/".join(parts[:i]) in self._bases for i in range(1, len(parts)))

    def claim(self, base: PurePosixPath) -> tuple[PurePosixPath, str]:
        """A free base derived from `base`, and a note for the manifest if it had to change."""
        candidate, n = base, 1
        while self._taken(str(candidate).casefold()):
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")
        key = str(candidate).casefold()
        self._bases.add(key)
        parts = key.split("/")
        self._prefixes.update("/".join(parts[:i]) for i in range(1, len(parts)))
        note = "" if n == 1 else f"name collision: {base} taken, wrote {candidate}"
        return candidate, note


class OutsideOutputError(ValueError):
    """An output path would resolve outside the output folder."""


def inside_output(out_root: Path, rel: PurePosixPath | str) -> Path:
    """`out_root / rel`, refusing any path that resolves outside `out_root` (links included)."""
    root = out_root.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise OutsideOutputError(f"refusing to write outside the output folder: {rel}")
    return target


def relative_to_output(out_root: Path, path: Path) -> str:
    """A written path as the manifest records it: relative to OUT, with forward slashes."""
    return Path(os.path.relpath(path, out_root.resolve())).as_posix()
